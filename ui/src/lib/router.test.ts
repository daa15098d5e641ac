import { describe, expect, it } from "vitest";
import { href, parse } from "./router.svelte";

describe("router", () => {
  it("opens the devices table filtered by state and rollout, as the funnel links ask", () => {
    const link = href({ screen: "devices", state: "failed", rollout: 3 });
    expect(link).toBe("#/devices?state=failed&rollout=3");
    expect(parse(link)).toEqual({ screen: "devices", state: "failed", rollout: 3 });
  });

  it("keeps the plain devices address and drops filters it cannot read", () => {
    expect(href({ screen: "devices" })).toBe("#/devices");
    expect(parse("#/devices")).toEqual({ screen: "devices" });
    expect(parse("#/devices?rollout=abc&state=")).toEqual({ screen: "devices" });
  });

  it("round-trips every other screen", () => {
    for (const route of [
      { screen: "device", id: "ABC 1/2" },
      { screen: "rollout", id: 12 },
      { screen: "wizard", release: "macOS 26.4.1" },
      { screen: "audit" },
    ] as const) {
      expect(parse(href(route))).toEqual(route);
    }
  });
});
