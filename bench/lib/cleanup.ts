/**
 * Undo steps for everything a benchmark sets up (mounts, daemons, temp trees), run newest
 * first. A step runs when its owner releases it, or at the end of the run, also when the run
 * fails or is interrupted (SIGINT/SIGTERM/SIGHUP). A step that fails when released stays
 * registered, so the end of the run tries it again once the steps after it are undone.
 */

/** Runs an undo step now; resolves once it has succeeded. */
export type Release = () => Promise<void>;

interface Step {
  label: string;
  undo: () => Promise<void> | void;
  running?: Promise<void>;
}

export class Cleanup {
  private readonly steps: Step[] = [];

  add(label: string, undo: () => Promise<void> | void): Release {
    const step: Step = { label, undo };
    this.steps.push(step);
    return () => this.run(step);
  }

  private run(step: Step): Promise<void> {
    if (!this.steps.includes(step)) return Promise.resolve();
    step.running ??= (async () => {
      try {
        await step.undo();
        this.steps.splice(this.steps.indexOf(step), 1);
      } finally {
        step.running = undefined;
      }
    })();
    return step.running;
  }

  /**
   * A cleanup of its own (for one area, say) that runs as a single step of this one: the
   * caller runs it when done, and it still runs if this one is run first (on a signal).
   */
  scope(label: string): Cleanup {
    const child = new Cleanup();
    this.add(label, () => child.runAll());
    return child;
  }

  /** Tries every remaining step once, newest first; failures are reported, the rest still run. */
  async runAll(): Promise<void> {
    for (const step of [...this.steps].reverse()) {
      try {
        await this.run(step);
      } catch (err) {
        process.stderr.write(`bench: cleanup of ${step.label} failed: ${(err as Error).message}\n`);
      }
    }
  }

  /** Makes SIGINT, SIGTERM and SIGHUP run the remaining steps, then exit with 130/143/129. */
  onSignals(): void {
    const codes: Array<[NodeJS.Signals, number]> = [
      ['SIGINT', 130],
      ['SIGTERM', 143],
      ['SIGHUP', 129],
    ];
    let exiting = false;
    for (const [signal, status] of codes) {
      process.on(signal, () => {
        if (exiting) return;
        exiting = true;
        process.stderr.write(`bench: ${signal}, cleaning up\n`);
        void this.runAll().finally(() => process.exit(status));
      });
    }
  }
}
