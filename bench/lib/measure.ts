/** Repeating measurements fairly and summing them up. */

export function median(values: number[]): number {
  if (!values.length) throw new Error('median of nothing');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Measures every subject once per round, `rounds` times, so that drift over the run (page
 * cache, CPU frequency, other load) spreads over all subjects alike. Returns each subject's
 * median.
 */
export async function medianOfRounds<S>(subjects: readonly S[], rounds: number, measure: (subject: S, round: number) => Promise<number>): Promise<number[]> {
  const values: number[][] = subjects.map(() => []);
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < subjects.length; i++) values[i]!.push(await measure(subjects[i]!, round));
  }
  return values.map(median);
}
