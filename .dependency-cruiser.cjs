/** Layer rules (docs/architecture.md, "Layers"): imports point downward only. */
const layer = (from, forbidden, comment) => ({
  name: `layer-${from.replace(/[^a-z]/g, '-')}`,
  severity: 'error',
  comment,
  from: { path: `^${from}` },
  to: { path: forbidden.map((f) => `^${f}`).join('|') },
});
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'The import graph must be acyclic.', from: {}, to: { circular: true } },
    {
      name: 'machines-are-pure', severity: 'error',
      comment: 'machines/ import nothing but xstate, croner (pure calendar math) and each other: no Node builtins, no src/.',
      from: { path: '^machines/' },
      to: { pathNot: '^machines/|node_modules/xstate|node_modules/@xstate|node_modules/croner' },
    },
    layer('src/bus/', ['src/(supervisor|server|cli|cluster|store|providers)/'], 'bus imports nothing above it'),
    layer('src/providers/', ['src/(supervisor|server|cli|cluster|store|bus)/'], 'providers are a leaf of I/O'),
    layer('src/store/', ['src/(supervisor|server|cli|cluster|bus|providers)/'], 'store is a leaf of I/O'),
    layer('src/templates/', ['src/(supervisor|server|cli|cluster|store|providers|bus)/', 'machines/'], 'templates are policy: errors and protocol types only'),
    layer('src/supervisor/', ['src/(server|cli|cluster)/'], 'supervisor sits below server, cli and cluster'),
    layer('src/server/', ['src/(cli|cluster)/'], 'server sits below cli'),
    layer('src/(client|agent)/', ['src/(supervisor|server|cli|cluster|store|providers|bus)/', 'machines/'], 'client and agent depend only on protocol types'),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '\\.test\\.ts$' },
  },
};
