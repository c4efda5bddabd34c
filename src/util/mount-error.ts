/**
 * The one error for a mount refused or failed before it serves: a layout the checks reject, a
 * mountpoint or control directory that will not do, a mount(2) or fusermount3 that fails. The
 * message is one line that names the problem, shown to the user as it is.
 */
export class MountError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MountError';
  }
}
