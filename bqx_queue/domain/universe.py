"""The BQX universe: 8 currencies, their 28 pairs, the 7 prediction horizons and target names."""

from __future__ import annotations

from collections.abc import Iterable

from bqx_queue.domain.errors import SelectionError

CURRENCIES: tuple[str, ...] = ("eur", "gbp", "aud", "nzd", "usd", "cad", "chf", "jpy")

# Market convention: the base currency is the one earlier in CURRENCIES, so every pair of
# currencies yields exactly one of the 28 quoted pairs (eurusd, usdjpy, gbpchf, ...).
PAIRS: tuple[str, ...] = (
    "eurusd", "gbpusd", "usdjpy", "usdchf", "audusd", "usdcad", "nzdusd",
    "eurgbp", "eurjpy", "eurchf", "euraud", "eurcad", "eurnzd",
    "gbpjpy", "gbpchf", "gbpaud", "gbpcad", "gbpnzd",
    "audjpy", "audchf", "audcad", "audnzd",
    "nzdjpy", "nzdchf", "nzdcad",
    "cadjpy", "cadchf", "chfjpy",
)  # fmt: skip

HORIZONS: tuple[int, ...] = (15, 30, 45, 60, 75, 90, 105)
BQX_WINDOWS: tuple[int, ...] = (45, 90, 180, 360, 720, 1440, 2880)
TARGET_WINDOW = 45

GROUPS: dict[str, tuple[str, ...]] = {
    "majors": ("eurusd", "gbpusd", "usdjpy", "usdchf", "audusd", "usdcad", "nzdusd"),
    "crosses": tuple(p for p in PAIRS if "usd" not in p),
    **{f"{ccy}-pairs": tuple(p for p in PAIRS if ccy in (p[:3], p[3:])) for ccy in CURRENCIES},
}


def target_column(horizon: int, window: int = TARGET_WINDOW) -> str:
    """Return the targets-table column holding LEAD(bqx_window, horizon)."""
    return f"target_bqx{window}_h{horizon}"


TARGET_COLUMNS: tuple[str, ...] = tuple(target_column(h) for h in HORIZONS)


def pair_currencies(pair: str) -> tuple[str, str]:
    """Return (base, quote) of a pair such as 'eurusd'."""
    return pair[:3], pair[3:]


def resolve_pairs(spec: str | Iterable[str]) -> list[str]:
    """Return the pairs named by 'all', a group name, or a comma list, in universe order.

    Raises SelectionError naming the unknown or repeated entries, or an empty selection.
    """
    items = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    items = [s for s in items if s]
    if not items:
        raise SelectionError("no pairs selected: pass --pairs all, a group, or a comma list")
    chosen: list[str] = []
    for item in items:
        if item == "all":
            members: Iterable[str] = PAIRS
        elif item in GROUPS:
            members = GROUPS[item]
        elif item in PAIRS:
            members = (item,)
        else:
            known = ", ".join(["all", *GROUPS])
            raise SelectionError(f"unknown pair or group {item!r} (pairs: {', '.join(PAIRS)}; groups: {known})")
        repeated = [m for m in members if m in chosen]
        if repeated and item in PAIRS:
            raise SelectionError(f"pair {item!r} is listed twice")
        chosen.extend(m for m in members if m not in chosen)
    return chosen


def resolve_horizons(spec: str | Iterable[int] | None) -> list[int]:
    """Return the horizons named by a comma list (or all 7); raises on unknown or repeated ones."""
    if spec is None or spec == "all":
        return list(HORIZONS)
    raw = spec.split(",") if isinstance(spec, str) else list(spec)
    horizons: list[int] = []
    for item in raw:
        text = str(item).strip()
        if not text:
            continue
        try:
            horizon = int(text)
        except ValueError:
            raise SelectionError(f"horizon {text!r} is not a number (known: {HORIZONS})") from None
        if horizon not in HORIZONS:
            raise SelectionError(f"unknown horizon {horizon} (known: {', '.join(map(str, HORIZONS))})")
        if horizon in horizons:
            raise SelectionError(f"horizon {horizon} is listed twice")
        horizons.append(horizon)
    if not horizons:
        raise SelectionError("no horizons selected")
    return sorted(horizons)
