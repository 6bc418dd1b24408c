/** Time as a port, so core logic and tests never read the wall clock directly. */
export interface Clock {
  now(): number;
}
export const systemClock: Clock = { now: () => Date.now() };
