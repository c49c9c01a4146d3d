/** Tests are compiled by `tsc` first (see package.json "test"), then run as native ESM. */
export default {
  testEnvironment: 'node',
  testMatch: ['<rootDir>/dist/test/**/*.test.js'],
  transform: {},
  testTimeout: 120000,
  maxWorkers: 2,
};
