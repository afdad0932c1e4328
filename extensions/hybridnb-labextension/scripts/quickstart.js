// Copy notebooks/00_quickstart.ipynb into src/quickstart.json (git-ignored), without
// outputs, so the launcher's "hybridnb quickstart" ships inside the bundle.
const fs = require('fs');
const path = require('path');

const source = path.resolve(__dirname, '../../../notebooks/00_quickstart.ipynb');
const target = path.resolve(__dirname, '../src/quickstart.json');
const nb = JSON.parse(fs.readFileSync(source, 'utf8'));
for (const cell of nb.cells) {
  if (cell.cell_type === 'code') {
    cell.outputs = [];
    cell.execution_count = null;
  }
}
const text = JSON.stringify(nb, null, 1) + '\n';
if (!fs.existsSync(target) || fs.readFileSync(target, 'utf8') !== text) {
  fs.writeFileSync(target, text);
}
