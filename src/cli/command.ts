/**
 * One parse of a command line for both ways in: the Node command line (src/cli.ts) and the
 * server's mount requests (src/server). OVSHIFT_OPTIONS applies before the command line's
 * options, for tools that cannot pass any (as a module parameter would for kernel overlayfs).
 */
import { OptionValueError, parseArgs, type Command } from './options';

export function parseCommandLine(argv: string[], defaults: string | undefined): Command {
  return parseArgs([...(defaults ? ['-o', defaults] : []), ...argv]);
}

/** Exit status of a refused command line: a value an option does not take is a failed mount. */
export function refusalStatus(err: Error): number {
  return err instanceof OptionValueError ? 1 : 2;
}
