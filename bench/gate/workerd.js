// The workerd peer of examples/workers/waits for bench/gate/waits.sh.
export class Room {
  constructor(state) { this.state = state; }
  async fetch(req) {
    const url = new URL(req.url);
    if (url.pathname === "/sleep") {
      await new Promise((r) => setTimeout(r, Number(url.searchParams.get("ms"))));
      return new Response("slept");
    }
    if (url.pathname === "/wait") {
      await this.state.storage.put("before", 1);
      const r = await fetch(url.searchParams.get("u"));
      return new Response(await r.text());
    }
    return new Response("not found", { status: 404 });
  }
}
export default {
  async fetch(req, env) {
    const url = new URL(req.url);
    const [, obj, ...rest] = url.pathname.split("/");
    const stub = env.ROOM.get(env.ROOM.idFromName(obj));
    return stub.fetch("http://do/" + rest.join("/") + url.search);
  },
};
