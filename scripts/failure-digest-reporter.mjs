// A reporter for Node's test runner that writes nothing while the tests run
// and, at the end, a short digest of every failed test: its file, its name
// and the first lines of its error. scripts/test.sh prints that digest after
// the TAP summary, so the reason for a failure is at the end of a long log
// instead of somewhere in its middle.

/** Lines of each error message kept in the digest. */
const ERROR_LINES = 40;

/** Characters of one line kept in the digest. */
const LINE_LENGTH = 300;

export default async function* failureDigest(source) {
  const failures = [];

  for await (const event of source) {
    if (event.type !== 'test:fail') continue;

    // A suite fails when one of its tests fails; the test itself carries the reason.
    const error = event.data.details?.error;
    if (error?.failureType === 'subtestsFailed') continue;

    failures.push({ file: event.data.file ?? '(unknown file)', name: event.data.name, error });
  }

  if (failures.length === 0) return;
  yield `# ${failures.length} failed test(s), in short:\n`;
  for (const { file, name, error } of failures) {
    yield `#\n# FAILED: ${name}\n#   in ${file}\n`;
    for (const line of failureMessage(error).split('\n').slice(0, ERROR_LINES)) {
      yield `#   ${line.slice(0, LINE_LENGTH)}\n`;
    }
  }
}

/** Returns the message of a test failure. The runner wraps the thrown error in its `cause`. */
function failureMessage(error) {
  const thrown = error?.cause ?? error;
  if (thrown instanceof Error) return thrown.message;
  return String(thrown);
}
