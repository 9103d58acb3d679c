// The client tests' assertion: a failed check ends the program with its message.
export function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`check failed: ${message}`);
}
