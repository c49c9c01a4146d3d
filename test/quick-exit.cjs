/**
 * Loaded by the test command (`node --require ./test/quick-exit.cjs ... jest`) into jest and its
 * workers. Once a process has nothing left to do, it exits at once instead of tearing down its
 * environment.
 *
 * Why: jest's ESM runtime keeps every test file's module scope reachable until its worker ends
 * (measured: three files holding 128 MB each leave 384 MB live after a full collection), so
 * each file's Dawn devices live on too, and Node destroys them in its environment teardown
 * after the event loop empties: about 80 ms a device on lavapipe, seconds for a worker that ran
 * thirty GPU files. jest gives a worker 500 ms to exit, then kills it and prints "A worker
 * process has failed to exit gracefully". `process.exit` skips that teardown (the operating
 * system reclaims the memory); 'beforeExit' fires only when no write or timer is pending, so
 * nothing is cut short.
 */
process.once('beforeExit', (code) => process.exit(process.exitCode ?? code));
