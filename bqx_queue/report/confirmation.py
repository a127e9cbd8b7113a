"""The report's held-out confirmation: findings are the stable features held-out rows confirmed;
stable ones they did not confirm are listed apart with their evidence; flagged horizons (models
worse than the constant baseline on held-out rows) are named, never shown as successes."""

from __future__ import annotations

from bqx_queue.domain import (
    Confirmation,
    ConfirmationSection,
    FeatureVerdict,
    FlaggedHorizon,
    ReportPair,
    StableFeature,
    UnconfirmedRow,
    VerdictRow,
)

NOTE = (
    "Stable means selected in at least pi_thr of the 2B block-half subsamples of the first 75% of "
    "the history, through the feature's linear column, its |x|, or a product or gate with a partner "
    "(each half chooses its nonlinear columns from its own blocks); the error bound "
    "(Meinshausen-Buehlmann) bounds the expected number of such units selected in-sample by chance "
    "under that block-half subsampling (given the all-pairs scan that names the members a half may "
    "pair, which reads every selection row), and says nothing about held-out rows. Confirmed means "
    "that on the held-out last 25% (purged walk-forward folds) permuting the "
    "feature within each fold's test window raises log loss, with a one-sided lower bound above zero "
    "at its level in Holm's step-down over the horizon's k stable features (alpha / k for the most "
    "significant, alpha / (k - 1) for the next, ...; family-wise error rate alpha), and that the "
    "horizon's model beats the constant baseline (log-loss gain lower bound at alpha above zero, "
    "resampled in the feature's own blocks). Intervals are "
    "95% circular block-bootstrap intervals over the held-out rows (blocks of at least horizon + 45 "
    "rows, longer for persistent features; Student t on the feature's independent stretches - 1 "
    "degrees of freedom): they cover "
    "the sampling of held-out rows given the fold models, not the variability of selection or "
    "training. A horizon is flagged when its held-out AUC interval lies below 0.5 (the constant "
    "baseline's) or its log-loss gain interval lies below 0; a flagged horizon confirms nothing. "
    "A confirmed nonlinear feature's shape also names its strongest partner in the horizon's final "
    "model (largest mean |SHAP interaction value| on held-out rows; share: of the feature's interaction "
    "mass) and says when selection found another."
)


def why_unconfirmed(feature: FeatureVerdict, verdict: Confirmation) -> str:
    """Return why held-out rows did not confirm a stable feature, in words."""
    if verdict.flagged:
        return f"horizon flagged: {verdict.flag_reason}"
    if feature.lower_bound <= 0:
        level = feature.level or verdict.level
        return f"effect lower bound {feature.lower_bound:+.4f} at level {level:.4g} is not above 0"
    gate = verdict.gain_lower_bound if feature.gate_lower_bound is None else feature.gate_lower_bound
    return (
        f"the horizon's model does not beat the baseline on held-out rows "
        f"(log-loss gain lower bound {gate:+.4f}, resampled in this feature's blocks)"
    )


def confirmation_section(pairs: list[ReportPair]) -> ConfirmationSection:
    """Return report.json's confirmation section from the pairs' horizon entries."""
    findings: list[VerdictRow] = []
    unconfirmed: list[UnconfirmedRow] = []
    flagged: list[FlaggedHorizon] = []
    evaluated = 0
    for p in pairs:
        for horizon, result in p.horizons.items():
            verdict = result.confirmation
            if verdict is None:  # a summary written before held-out verdicts existed
                continue
            evaluated += 1
            stable = {s.feature: s for s in result.stable}
            partners = {m.feature: m for m in result.model_partners}
            for feature in verdict.features:
                model = partners.get(feature.feature)
                selected = stable.get(feature.feature) or StableFeature(feature=feature.feature, frequency=0.0)
                row = VerdictRow(
                    **selected.model_dump(),
                    pair=p.pair,
                    horizon=int(horizon),
                    model_partner=model.partner if model else None,
                    model_partner_share=model.share if model else None,
                    model_interaction=model.interaction if model else None,
                    effect=feature.effect,
                    effect_low=feature.effect_low,
                    effect_high=feature.effect_high,
                    lower_bound=feature.lower_bound,
                    k=verdict.k,
                    level=feature.level or verdict.level,
                )
                if feature.confirmed:
                    findings.append(row)
                else:
                    why = why_unconfirmed(feature, verdict)
                    unconfirmed.append(UnconfirmedRow(**row.model_dump(exclude={"why"}), why=why))
            if verdict.flagged:
                flagged.append(
                    FlaggedHorizon(
                        pair=p.pair,
                        horizon=int(horizon),
                        reason=verdict.flag_reason or "",
                        auc=verdict.auc,
                        log_loss_gain=verdict.log_loss_gain,
                    )
                )
    findings.sort(key=lambda r: (r.pair, r.horizon, -r.effect))
    unconfirmed.sort(key=lambda r: (r.pair, r.horizon, -r.effect))
    return ConfirmationSection(
        note=NOTE,
        horizons_evaluated=evaluated,
        findings=findings,
        unconfirmed=unconfirmed,
        flagged_horizons=flagged,
    )
