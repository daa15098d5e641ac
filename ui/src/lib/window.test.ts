import { describe, expect, it } from "vitest";
import { PAGE, ROW_HEIGHT, keepPages, pagesFor, slotsFor, visibleRows } from "./window";

describe("the devices table's window", () => {
  it("renders only what is on screen, plus a margin", () => {
    const span = visibleRows(50_000 * ROW_HEIGHT, 20 * ROW_HEIGHT, 100_000);
    expect(span.first).toBe(49_990);
    expect(span.last).toBe(50_030);
  });
  it("stops at the ends", () => {
    expect(visibleRows(0, 600, 5)).toEqual({ first: 0, last: 5 });
    expect(visibleRows(99_999 * ROW_HEIGHT, 600, 100_000).last).toBe(100_000);
  });
  it("asks for the pages under the window only", () => {
    expect(pagesFor({ first: PAGE - 5, last: PAGE + 5 })).toEqual([0, 1]);
    expect(pagesFor({ first: 0, last: 0 })).toEqual([0]);
  });
  it("gives every row on screen its own slot, at any scroll position", () => {
    for (const viewport of [300, 601, 800]) {
      for (let scrollTop = 0; scrollTop < 3 * ROW_HEIGHT; scrollTop += 7) {
        const span = visibleRows(1000 * ROW_HEIGHT + scrollTop, viewport, 100_000);
        const slots = new Set<number>();
        for (let i = span.first; i < span.last; i++) slots.add(i % slotsFor(viewport));
        expect(slots.size).toBe(span.last - span.first);
      }
    }
  });
  it("keeps only the pages near the screen", () => {
    const loaded = new Map([0, 1, 2, 40, 41, 42, 43, 44, 90].map((p) => [p, `page ${p}`]));
    expect([...keepPages(loaded, [42]).keys()]).toEqual([40, 41, 42, 43, 44]);
  });
});
