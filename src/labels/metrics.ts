/**
 * Agreement metrics between two graders on an ordinal 1..K scale (pure; no I/O).
 * Used by `pinrich labels eval` to compare the teacher with human (golden) labels.
 */

/** Fraction of pairs with a === b; null for no pairs. */
export function exactAccuracy(a: readonly number[], b: readonly number[]): number | null {
  if (a.length === 0) return null;
  return a.filter((x, i) => x === b[i]).length / a.length;
}

/** Fraction of pairs with |a - b| <= 1; null for no pairs. */
export function withinOneAccuracy(a: readonly number[], b: readonly number[]): number | null {
  if (a.length === 0) return null;
  return a.filter((x, i) => Math.abs(x - b[i]!) <= 1).length / a.length;
}

/** Confusion matrix: m[i][j] = pairs with a = i+min, b = j+min. */
export function confusionMatrix(a: readonly number[], b: readonly number[], min = 1, max = 5): number[][] {
  const k = max - min + 1;
  const m = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  a.forEach((x, i) => {
    const y = b[i]!;
    if (x < min || x > max || y < min || y > max) throw new RangeError(`grade outside ${min}..${max}: ${x}, ${y}`);
    m[x - min]![y - min]!++;
  });
  return m;
}

/**
 * Cohen's kappa with quadratic weights: 1 - sum(w*O) / sum(w*E), w_ij = (i-j)^2 / (K-1)^2,
 * O the observed confusion counts, E = outer(row totals, column totals) / n. Null when
 * undefined (no pairs, or both graders always give one and the same grade: sum(w*E) = 0).
 */
export function quadraticWeightedKappa(a: readonly number[], b: readonly number[], min = 1, max = 5): number | null {
  const n = a.length;
  if (n === 0) return null;
  const k = max - min + 1;
  const o = confusionMatrix(a, b, min, max);
  const rows = o.map((r) => r.reduce((s, v) => s + v, 0));
  const cols = o[0]!.map((_, j) => o.reduce((s, r) => s + r[j]!, 0));
  let num = 0;
  let den = 0;
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const w = (i - j) ** 2 / (k - 1) ** 2;
      num += w * o[i]![j]!;
      den += (w * rows[i]! * cols[j]!) / n;
    }
  }
  return den === 0 ? null : 1 - num / den;
}

/** Ranks 1..n, ties getting the average of the ranks they span. */
export function averageRanks(x: readonly number[]): number[] {
  const order = x.map((v, i) => [v, i] as const).sort((p, q) => p[0] - q[0]);
  const ranks = new Array<number>(x.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1]![0] === order[i]![0]) j++;
    const rank = (i + j) / 2 + 1;
    for (let t = i; t <= j; t++) ranks[order[t]![1]] = rank;
    i = j + 1;
  }
  return ranks;
}

/** Pearson correlation; null when fewer than 2 pairs or either side is constant. */
export function pearson(x: readonly number[], y: readonly number[]): number | null {
  const n = x.length;
  if (n < 2) return null;
  const mx = x.reduce((s, v) => s + v, 0) / n;
  const my = y.reduce((s, v) => s + v, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i]! - mx;
    const dy = y[i]! - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  return sxx === 0 || syy === 0 ? null : sxy / Math.sqrt(sxx * syy);
}

/** Spearman's rho: Pearson on average ranks (correct with ties). */
export function spearman(x: readonly number[], y: readonly number[]): number | null {
  return pearson(averageRanks(x), averageRanks(y));
}

export interface Agreement {
  n: number;
  exact: number | null;
  withinOne: number | null;
  kappa: number | null;
  spearman: number | null;
}

/** All scalar metrics for human grades `human` and teacher grades `teacher` (same order). */
export function agreement(human: readonly number[], teacher: readonly number[]): Agreement {
  return {
    n: human.length,
    exact: exactAccuracy(human, teacher),
    withinOne: withinOneAccuracy(human, teacher),
    kappa: quadraticWeightedKappa(human, teacher),
    spearman: spearman(human, teacher),
  };
}
