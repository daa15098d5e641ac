// Screens are addressed by the URL's hash (#/devices, #/device/<id>), so back and forward work.

export type Route =
  | { screen: "dashboard" }
  | { screen: "releases" }
  | { screen: "devices"; state?: string; rollout?: number }
  | { screen: "device"; id: string }
  | { screen: "wizard"; release: string | null }
  | { screen: "rollouts" }
  | { screen: "rollout"; id: number }
  | { screen: "alerts" }
  | { screen: "audit" }
  | { screen: "settings" }
  | { screen: "policies" }
  | { screen: "draft"; id: number }
  | { screen: "compliance"; platform: string; release: string | null };

export function parse(hash: string): Route {
  const [path, query] = hash.replace(/^#\/?/, "").split("?", 2);
  const [screen, arg] = path.split("/").map((p) => decodeURIComponent(p ?? ""));
  switch (screen) {
    case "devices":
      return devicesRoute(new URLSearchParams(query ?? ""));
    case "releases":
    case "rollouts":
    case "alerts":
    case "audit":
    case "settings":
    case "policies":
      return { screen };
    case "draft": {
      const id = Number(arg);
      return Number.isInteger(id) && id > 0 ? { screen: "draft", id } : { screen: "dashboard" };
    }
    case "compliance": {
      const params = new URLSearchParams(query ?? "");
      return { screen: "compliance", platform: params.get("platform") || "macOS", release: params.get("release") };
    }
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

// The devices table can open filtered, so a count elsewhere can link to the devices behind it.
function devicesRoute(params: URLSearchParams): Route {
  const route: Route = { screen: "devices" };
  const state = params.get("state");
  if (state) route.state = state;
  const rollout = Number(params.get("rollout"));
  if (Number.isInteger(rollout) && rollout > 0) route.rollout = rollout;
  return route;
}

export function href(route: Route): string {
  switch (route.screen) {
    case "devices": {
      const params = new URLSearchParams();
      if (route.state) params.set("state", route.state);
      if (route.rollout) params.set("rollout", String(route.rollout));
      const query = params.toString();
      return query ? `#/devices?${query}` : "#/devices";
    }
    case "device":
      return `#/device/${encodeURIComponent(route.id)}`;
    case "wizard":
      return route.release ? `#/wizard/${encodeURIComponent(route.release)}` : "#/wizard";
    case "rollout":
      return `#/rollout/${route.id}`;
    case "draft":
      return `#/draft/${route.id}`;
    case "compliance": {
      const params = new URLSearchParams({ platform: route.platform });
      if (route.release) params.set("release", route.release);
      return `#/compliance?${params.toString()}`;
    }
    default:
      return `#/${route.screen}`;
  }
}

export function go(route: Route): void {
  window.location.hash = href(route);
}
