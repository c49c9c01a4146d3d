#!/usr/bin/env node
// The intuitor command line (compiled TypeScript in dist/; `npm run build` makes it).
import('../dist/src/cli/index.js').then(
  (cli) => cli.main(process.argv),
  (err) => {
    console.error(`intuitor: cannot load dist/src/cli/index.js (${err.message}); run \`npm run build\` first`);
    process.exit(1);
  },
);
