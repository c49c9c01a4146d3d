/** Tests are compiled by `tsc` first (package.json "pretest" runs scripts/setup.sh, which builds), then run as native ESM. */
export default {
  testEnvironment: 'node',
  testMatch: ['<rootDir>/dist/test/**/*.test.js'],
  transform: {},
  testTimeout: 120000,
  maxWorkers: 2,
};
