using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .mainWorker),
    (name = "disk", disk = (path = "data", writable = true)),
    (name = "internet", network = (allow = ["private", "local"])),
  ],
  sockets = [ ( name = "http", address = "127.0.0.1:18096", http = (), service = "main" ) ],
);
const mainWorker :Workerd.Worker = (
  modules = [ (name = "worker", esModule = embed "workerd.js") ],
  compatibilityDate = "2024-01-01",
  durableObjectNamespaces = [ (className = "Room", uniqueKey = "room-key", enableSql = true) ],
  durableObjectStorage = (localDisk = "disk"),
  bindings = [ (name = "ROOM", durableObjectNamespace = "Room") ],
  globalOutbound = "internet",
);
