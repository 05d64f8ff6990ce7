// The architecture rules of src/ (ARCHITECTURE.md, "Dependency rules"), checked by
// dependency-cruiser in `npm test` (test/architecture.test.ts): dependencies point one way,
// listeners -> controls -> core, and the Operation interface depends on nothing.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      severity: 'error',
      comment: 'No import cycles in src/ (type-only imports count: they couple the modules as much).',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'operation-is-a-leaf',
      severity: 'error',
      comment: 'src/operation.ts is the one interface between protocols and controls: it imports nothing of the project.',
      from: { path: '^src/operation\\.ts$' },
      to: { path: '^src/', pathNot: '^src/operation\\.ts$' },
    },
    {
      name: 'protocols-do-not-reach-into-controls',
      severity: 'error',
      comment: 'Listeners see controls only through the Operation and the Dispatcher; failures arrive as GatewayError fields.',
      from: { path: '^src/protocols/' },
      to: { path: '^src/controls/' },
    },
    {
      name: 'controls-know-no-protocol',
      severity: 'error',
      comment: 'Controls and the inspection engine work on Operations and record formats, never on a protocol module.',
      from: { path: '^src/(controls|inspect)/' },
      to: { path: '^src/protocols/' },
    },
    {
      name: 'protocols-are-independent',
      severity: 'error',
      comment: 'One folder per protocol: a listener never imports another protocol\'s folder.',
      from: { path: '^src/protocols/([^/]+)/' },
      to: { path: '^src/protocols/', pathNot: ['^src/protocols/$1/', '^src/protocols/[^/]+\\.ts$'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^src/',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
