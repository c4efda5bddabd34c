/**
 * A benchmark area: one module (bench/<area>.ts) that sets up what it compares, runs its
 * workloads and returns its report. main.ts lists the areas; `scripts/bench NAME` picks one.
 */
import type { Cleanup } from './lib/cleanup';
import type { Workloads } from './lib/workload';

export interface BenchContext {
  /**
   * Everything an area mounts or creates is registered here; what the area has not released
   * itself is undone when it ends, also on failure.
   */
  readonly cleanup: Cleanup;
  readonly workloads: Workloads;
  /** Progress for the person waiting, on stderr (stdout carries only the report). */
  progress(message: string): void;
}

export interface BenchArea {
  /** What `scripts/bench NAME` calls it. */
  readonly name: string;
  /** One line on what the area compares (shown by `scripts/bench --help`). */
  readonly summary: string;
  /** Runs the area's workloads; returns its report in Markdown. */
  run(ctx: BenchContext): Promise<string>;
}
