/**
 * Node-RED settings for urbanbrain's peer benchmark (bench/bench_peer_nodered.py).
 *
 * The bench copies this file into a temp userDir and passes what changes per run in
 * environment variables, so the same file works for any LocalStack's ports:
 *   UB_NODERED_PORT    HTTP port (127.0.0.1 only; the editor and admin API are off anyway)
 *   UB_REGISTRY_PATH   urbanbrain's device registry CSV (sensor_id,domain,kind,district,...)
 *
 * The registry is loaded into global context because a SenML pack's topic names a gateway,
 * not a kind: urbanbrain's ingest takes the kind from the same registry, so the peer does too.
 */
const fs = require("fs");

/** sensor_id -> kind, from the registry CSV (no quoted fields: lists are ';'-joined). */
function loadKinds(path) {
    const kinds = {};
    if (!path) {
        return kinds;
    }
    const lines = fs.readFileSync(path, "utf8").split(/\r?\n/);
    const head = lines[0].split(",");
    const idCol = head.indexOf("sensor_id");
    const kindCol = head.indexOf("kind");
    for (let i = 1; i < lines.length; i++) {
        if (!lines[i]) {
            continue;
        }
        const cols = lines[i].split(",");
        kinds[cols[idCol]] = cols[kindCol];
    }
    return kinds;
}

module.exports = {
    uiHost: "127.0.0.1",
    uiPort: parseInt(process.env.UB_NODERED_PORT || "1880", 10),
    flowFile: "flows.json",
    flowFilePretty: false,
    credentialSecret: false,
    // Headless: no editor, no admin API, no HTTP-in routes.
    httpAdminRoot: false,
    httpNodeRoot: false,
    disableEditor: true,
    functionGlobalContext: {
        kinds: loadKinds(process.env.UB_REGISTRY_PATH),
    },
    functionExternalModules: false,
    externalModules: {
        autoInstall: false,
        palette: { allowInstall: false },
        modules: { allowInstall: false },
    },
    diagnostics: { enabled: false, ui: false },
    runtimeState: { enabled: false, ui: false },
    telemetry: { enabled: false, updateNotification: false },
    logging: {
        console: { level: "info", metrics: false, audit: false },
    },
};
