// The layers (docs/architecture.md): each folder imports only from the layers below it, and nothing imports in a cycle.
//
//   cli/ -> client/, bench/, ops/ -> server/, selectors/ -> protocol/ -> core/, native/
/** A rule that `from` may not import `to`. */
const forbid = (name, comment, from, to) => ({
  name,
  comment,
  severity: 'error',
  from: { path: from },
  to: { path: to },
});
const LOWER_THAN_CLI = '^src/(client|bench|ops|server|selectors|protocol|core|native)/';

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'A cycle makes two modules one: nobody can read or test either alone.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    forbid(
      'cli-is-the-top',
      'Only the CLI turns flags into options; nothing below may import it.',
      LOWER_THAN_CLI,
      '^src/cli/',
    ),
    forbid(
      'front-ends-are-peers',
      'client/, bench/ and ops/ sit side by side above the server and selectors.',
      '^src/(server|selectors|protocol|core|native)/',
      '^src/(client|bench|ops)/',
    ),
    forbid(
      'client-bench-ops-apart',
      'client/, bench/ and ops/ do not use one another.',
      '^src/client/',
      '^src/(bench|ops)/',
    ),
    forbid('bench-apart', 'client/, bench/ and ops/ do not use one another.', '^src/bench/', '^src/(client|ops)/'),
    forbid('ops-apart', 'client/, bench/ and ops/ do not use one another.', '^src/ops/', '^src/(client|bench)/'),
    forbid(
      'server-selectors-apart',
      'The server and the selectors port share only what lies below them.',
      '^src/server/',
      '^src/selectors/',
    ),
    forbid(
      'selectors-server-apart',
      'The server and the selectors port share only what lies below them.',
      '^src/selectors/',
      '^src/server/',
    ),
    forbid(
      'protocol-below-server',
      'protocol/ (PROXY header, framing, transforms) knows no server or selectors.',
      '^src/(protocol|core|native)/',
      '^src/(server|selectors)/',
    ),
    forbid(
      'core-native-at-the-bottom',
      'core/ and native/ import nothing above them.',
      '^src/(core|native)/',
      '^src/(protocol)/',
    ),
    forbid(
      'core-imports-no-native',
      'core/ is plain TypeScript: errors, logging, addresses.',
      '^src/core/',
      '^src/native/',
    ),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
  },
};
