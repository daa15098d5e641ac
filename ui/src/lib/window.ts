// Which rows of a long table are on screen, and which pages of rows that needs: the devices
// table holds only these, however many devices there are.

export const ROW_HEIGHT = 34;
export const PAGE = 200;
const OVERSCAN = 10;

export interface Span { first: number; last: number }

/** Rows to render for a scroll position (last is exclusive). */
export function visibleRows(scrollTop: number, viewport: number, total: number): Span {
  const first = Math.max(0, Math.floor(scrollTop / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(total, Math.ceil((scrollTop + viewport) / ROW_HEIGHT) + OVERSCAN);
  return { first, last: Math.max(first, last) };
}

/** Page numbers covering a span of rows. */
export function pagesFor(span: Span): number[] {
  if (span.last <= span.first) return [0];
  const pages: number[] = [];
  for (let p = Math.floor(span.first / PAGE); p <= Math.floor((span.last - 1) / PAGE); p++) pages.push(p);
  return pages;
}

/** How many rows can be on screen at once for a viewport: a key per row that stays unique. */
export function slotsFor(viewport: number): number {
  return Math.ceil(viewport / ROW_HEIGHT) + 2 * OVERSCAN + 2;
}

/** Pages to keep of those loaded: the ones on screen and their neighbours. */
export function keepPages<T>(pages: Map<number, T>, onScreen: number[], margin = 2): Map<number, T> {
  const low = Math.min(...onScreen) - margin;
  const high = Math.max(...onScreen) + margin;
  return new Map([...pages].filter(([page]) => page >= low && page <= high));
}
