// report.html's only script: the page reads without it. It opens the pair section a link points
// at, sorts a table by a clicked header, and filters the pair sections and the families table
// by a typed word (a pair, a feature or a family).
(function () {
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var target = id && document.getElementById(id);
    if (!target) return;
    for (var node = target; node; node = node.parentElement) {
      if (node.tagName === 'DETAILS') node.open = true;
    }
    target.scrollIntoView();
  }
  window.addEventListener('hashchange', openTarget);
  openTarget();

  function cellValue(row, column) {
    var text = row.cells[column] ? row.cells[column].innerText.trim() : '';
    var number = parseFloat(text.replace(/^h/, '').replace(/[$,]/g, ''));
    return isNaN(number) ? text.toLowerCase() : number;
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var body = table.tBodies[0];
    table.querySelectorAll('thead th').forEach(function (header, column) {
      header.classList.add('sortable-key');
      header.title = 'sort';
      header.addEventListener('click', function () {
        var descending = header.dataset.order !== 'descending';
        header.dataset.order = descending ? 'descending' : 'ascending';
        Array.from(body.rows)
          .sort(function (a, b) {
            var x = cellValue(a, column), y = cellValue(b, column);
            var order = x < y ? -1 : x > y ? 1 : 0;
            return descending ? -order : order;
          })
          .forEach(function (row) { body.appendChild(row); });
      });
    });
  });

  var pairs = document.getElementById('pair-list');
  if (!pairs) return;
  var filter = document.createElement('input');
  filter.type = 'search';
  filter.id = 'filter';
  filter.placeholder = 'filter pairs and families: a pair, a feature or a family';
  filter.size = 60;
  pairs.parentNode.insertBefore(filter, pairs);
  filter.addEventListener('input', function () {
    var word = filter.value.trim().toLowerCase();
    pairs.querySelectorAll('details.pair').forEach(function (pair) {
      pair.hidden = word !== '' && pair.textContent.toLowerCase().indexOf(word) < 0;
    });
    document.querySelectorAll('table.filterable tbody tr').forEach(function (row) {
      row.hidden = word !== '' && row.textContent.toLowerCase().indexOf(word) < 0;
    });
  });
})();
