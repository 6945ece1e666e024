// Validate KQL queries with Microsoft's Kusto.Language (@kusto/language-service-next, the
// parser and semantic analyser Azure Data Explorer and Sentinel use, compiled to JavaScript).
//
// Run by phiwatch/rules/kql_check.py, all queries in one process (loading the library takes
// about a second, a query about 10 ms):
//   node kql_validate.js < {"modules": "<node_modules dir>",
//                           "schema": {"Table": {"Column": "type", ...}, ...},
//                           "queries": {"key": "kql", ...}}
// prints {"key": {"diagnostics": [...], "resultColumns": [[name, type], ...],
//                 "tables": [...], "operators": [...]}, ...}
// Diagnostics: errors from GetDiagnostics() (syntax and semantics: unknown names, wrong case,
// type errors) and the analyzer's lint diagnostics (e.g. KS508 join without kind=), each
// with `analyzer` set. Offsets are characters into the query text.
'use strict';

const fs = require('fs');
const path = require('path');

const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const library = path.join(input.modules, '@kusto', 'language-service-next');
require(path.join(library, 'bridge.min.js')); // the Bridge.NET runtime: sets global Bridge
require(path.join(library, 'Kusto.Language.Bridge.min.js')); // sets global Kusto

const K = global.Kusto.Language;
const S = K.Symbols;
const X = K.Syntax;

function quote(name) {
  return "['" + name.replace(/'/g, "\\'") + "']";
}

const members = Object.entries(input.schema).map(([table, columns]) => {
  const shape = Object.entries(columns).map(([c, type]) => quote(c) + ':' + type).join(', ');
  return new S.TableSymbol.$ctor7(table, '(' + shape + ')', null);
});
const globals = K.GlobalState.Default.WithDatabase(
  new S.DatabaseSymbol.$ctor1('phiwatch', members, false),
);

function list(items, map) {
  const out = [];
  for (let i = 0; i < items.Count; i++) out.push(map(items.getItem(i)));
  return out;
}

function diagnostic(d, analyzer) {
  return {
    severity: d.Severity,
    code: d.Code,
    start: d.Start,
    length: d.Length,
    message: d.Message,
    analyzer: analyzer,
  };
}

// Operators that matter to rule constraints (NRT rules take neither joins nor unions).
const OPERATORS = [
  ['join', X.JoinOperator],
  ['union', X.UnionOperator],
  ['lookup', X.LookupOperator],
];

function analyse(text) {
  const code = K.KustoCode.ParseAndAnalyze(text, globals);
  const diagnostics = list(code.GetDiagnostics(), (d) => diagnostic(d, false));
  // The service over the already analysed code: the whole rule is one query (CodeScript
  // would split it into blocks at blank lines).
  const service = new K.Editor.KustoCodeService.ctor(code);
  for (const d of list(service.GetAnalyzerDiagnostics(true), (x) => diagnostic(x, true))) {
    diagnostics.push(d);
  }
  const tables = new Set();
  const operators = new Set();
  code.Syntax.WalkNodes((node) => {
    for (const [name, type] of OPERATORS) if (Bridge.is(node, type)) operators.add(name);
    const symbol = node.ReferencedSymbol;
    if (symbol && Bridge.is(symbol, S.TableSymbol)) tables.add(symbol.Name);
  });
  const result = code.ResultType;
  const columns =
    result && result.Columns ? list(result.Columns, (c) => [c.Name, c.Type.Name]) : [];
  return {
    diagnostics: diagnostics,
    resultColumns: columns,
    tables: [...tables].sort(),
    operators: [...operators].sort(),
  };
}

const out = {};
for (const [key, text] of Object.entries(input.queries)) {
  try {
    out[key] = analyse(text);
  } catch (error) {
    out[key] = {
      diagnostics: [
        {
          severity: 'Error',
          code: 'validator',
          start: 0,
          length: 0,
          message: 'Kusto.Language failed on this query: ' + error,
          analyzer: false,
        },
      ],
      resultColumns: [],
      tables: [],
      operators: [],
    };
  }
}
process.stdout.write(JSON.stringify(out));
