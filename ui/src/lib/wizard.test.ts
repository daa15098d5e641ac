import { describe, expect, it } from "vitest";
import { defaultDeadline, detailsUrlError, evenShares, parseLocal, waveErrors, waveWarnings } from "./wizard";

const now = new Date("2026-04-12T09:00:00Z"); // a Sunday

describe("deadlines", () => {
  it("reads a local date and time, with or without seconds", () => {
    expect(parseLocal("2026-04-15T17:00")?.weekday).toBe(3);
    expect(parseLocal("2026-04-15T17:00:30")).not.toBeNull();
  });
  it("refuses what is not a date and time, including impossible days", () => {
    for (const bad of ["", "next friday", "2026-04-15", "2026-02-30T10:00", "2026-04-15T24:00", "2026-04-15T17:00Z"]) {
      expect(parseLocal(bad), bad).toBeNull();
    }
  });
  it("warns about a weekend, a past deadline and waves out of order", () => {
    const warnings = waveWarnings(
      [
        { percent: 50, deadline: "2026-04-18T17:00" },
        { percent: 25, deadline: "2026-04-16T17:00" },
        { percent: 25, deadline: "2026-04-10T17:00" },
      ],
      now,
    );
    expect(warnings).toContain("wave 1: the deadline falls on a Saturday");
    expect(warnings).toContain("wave 2 is due before wave 1");
    expect(warnings).toContain("wave 3: the deadline is in the past: devices will install within the hour");
  });
  it("warns that a deadline within hours may have passed in some zones", () => {
    const monday = new Date("2026-04-13T09:00:00Z");
    expect(waveWarnings([{ percent: 100, deadline: "2026-04-13T12:00" }], monday)).toEqual([
      "wave 1: the deadline may already have passed on some devices' clocks",
    ]);
  });
  it("proposes a weekday at 17:00", () => {
    expect(defaultDeadline(now, 6)).toBe("2026-04-20T17:00"); // Saturday 18th moves to Monday
  });
});

describe("waves", () => {
  it("needs shares above zero adding up to 100", () => {
    expect(waveErrors([{ percent: 100, deadline: "2026-04-15T17:00" }])).toEqual([]);
    expect(waveErrors([{ percent: 60, deadline: "2026-04-15T17:00" }, { percent: 30, deadline: "2026-04-16T17:00" }])[0]).toMatch(/not 90%/);
    expect(waveErrors([{ percent: 100, deadline: "2026-04-15T17:00" }, { percent: 0, deadline: "2026-04-16T17:00" }])).toHaveLength(1);
  });
  it("allows one to five waves", () => {
    expect(waveErrors([])).toContain("a rollout has one to 5 waves");
    const six = evenShares(6).concat([0]).map((percent) => ({ percent, deadline: "2026-04-15T17:00" }));
    expect(waveErrors(six)[0]).toMatch(/one to 5/);
  });
  it("splits shares evenly, the remainder on the last wave", () => {
    expect(evenShares(3)).toEqual([33, 33, 34]);
    expect(evenShares(1)).toEqual([100]);
  });
});

describe("DetailsURL", () => {
  it("is optional", () => expect(detailsUrlError("  ")).toBeNull());
  it("accepts an https page", () => expect(detailsUrlError("https://it.example.com/updates?os=26")).toBeNull());
  it("refuses anything but https, and credentials", () => {
    expect(detailsUrlError("http://it.example.com")).toMatch(/https/);
    expect(detailsUrlError("javascript:alert(1)")).toMatch(/https/);
    expect(detailsUrlError("https://user:pw@it.example.com")).toMatch(/user name/);
    expect(detailsUrlError("it.example.com/updates")).toMatch(/not a web address/);
  });
});
