/**
 * Wraps a fuzz target so that only failures count as crashes: an error the
 * module raises by contract (its typed error) is an ordinary outcome, and
 * anything else is printed with its stack and ends the process with exit
 * code 77, which libFuzzer reports as a crash and saves the input for.
 */

/** Returns true for errors that the module under test raises by contract. */
export type ExpectedError = (error: unknown) => boolean;

function reportCrash(error: unknown): never {
  console.error('uncaught exception in the fuzz target:');
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exit(77);
}

export function guardSync(target: (data: Buffer) => void, expected: ExpectedError = () => false): (data: Buffer) => void {
  return (data) => {
    try {
      target(data);
    } catch (error) {
      if (!expected(error)) reportCrash(error);
    }
  };
}

export function guardAsync(target: (data: Buffer) => Promise<void>, expected: ExpectedError = () => false): (data: Buffer) => Promise<void> {
  return async (data) => {
    try {
      await target(data);
    } catch (error) {
      if (!expected(error)) reportCrash(error);
    }
  };
}
