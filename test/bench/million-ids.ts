/** The million-workspace bench's ids: `run-NNNNNNN` run, `cold-NNNNNNN` are stopped. */
export const runningId = (i: number): string => `run-${String(i).padStart(7, '0')}`;
export const stoppedId = (i: number): string => `cold-${String(i).padStart(7, '0')}`;
