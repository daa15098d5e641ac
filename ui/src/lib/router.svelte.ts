// Screens are addressed by the URL's hash (#/devices, #/device/<id>), so back and forward work.

export type Route =
  | { screen: "dashboard" }
  | { screen: "releases" }
  | { screen: "devices" }
  | { screen: "device"; id: string }
  | { screen: "wizard"; release: string | null }
  | { screen: "rollouts" }
  | { screen: "rollout"; id: number }
  | { screen: "alerts" }
  | { screen: "audit" }
  | { screen: "settings" };

export function parse(hash: string): Route {
  const [screen, arg] = hash.replace(/^#\/?/, "").split("/").map((p) => decodeURIComponent(p ?? ""));
  switch (screen) {
    case "releases":
    case "devices":
    case "rollouts":
    case "alerts":
    case "audit":
    case "settings":
      return { screen };
    case "device":
      return arg ? { screen: "device", id: arg } : { screen: "devices" };
    case "wizard":
      return { screen: "wizard", release: arg || null };
    case "rollout": {
      const id = Number(arg);
      return Number.isInteger(id) && id > 0 ? { screen: "rollout", id } : { screen: "rollouts" };
    }
    default:
      return { screen: "dashboard" };
  }
}

export function href(route: Route): string {
  switch (route.screen) {
    case "device":
      return `#/device/${encodeURIComponent(route.id)}`;
    case "wizard":
      return route.release ? `#/wizard/${encodeURIComponent(route.release)}` : "#/wizard";
    case "rollout":
      return `#/rollout/${route.id}`;
    default:
      return `#/${route.screen}`;
  }
}

export function go(route: Route): void {
  window.location.hash = href(route);
}
