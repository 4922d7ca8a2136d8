// Runs dynalite's command line for the tests (scripts/stack.sh), keeping it alive when
// a client drops a request midway: dynalite throws on such a request's 'error' event,
// and the tests kill Parley processes on purpose, sometimes in the middle of a
// DynamoDB call. Any other uncaught error still ends the process.
process.on('uncaughtException', (err) => {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) {
    console.error('dynalite: a client dropped a request midway:', err.message);
    return;
  }
  console.error(err);
  process.exit(1);
});
require('./node_modules/dynalite/cli.js');
