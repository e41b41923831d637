"""What the deployment files must agree on with the code and with each other.

Run by deploy/check (which first validates the files with docker-compose, kubernetes-validate,
nginx and systemd-analyze) in a virtual environment that has PyYAML. Each check prints one line;
the last line says how many passed and failed, and the exit status is 1 if any failed.

The sources of truth are the code and its docs: the router in crates/server/src/http/mod.rs (which
paths exist), config/default.toml and docs/configuration.md (which NIGHTMARKET_* variables
exist), and the Dockerfile (which port the image listens on).
"""

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
K8S = os.path.join(DEPLOY, "kubernetes")

# Paths the server answers that must never be public: probes and Prometheus reach each hub
# directly (docs/protocol.md).
INTERNAL_PATHS = {"/healthz", "/readyz", "/metrics"}
# Margin between the server's drain and the supervisor's SIGKILL, in milliseconds.
STOP_MARGIN_MS = 2000

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok or not detail else ': ' + detail}")


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def config_variables():
    """Every NIGHTMARKET_* variable a configuration key has, from config/default.toml."""
    defaults = tomllib.loads(read("config", "default.toml"))
    names = set()
    for key, value in defaults.items():
        if isinstance(value, dict):
            names |= {f"NIGHTMARKET_{key}_{k}".upper() for k in value}
        else:
            names.add(f"NIGHTMARKET_{key}".upper())
    return names


def documented_variables():
    """Every NIGHTMARKET_* variable docs/configuration.md names in a table row."""
    names = set()
    for line in read("docs", "configuration.md").splitlines():
        if line.startswith("|"):
            names |= set(re.findall(r"`(NIGHTMARKET_[A-Z0-9_]+)`", line))
    return names


def router_paths():
    """The paths of crates/server/src/http/mod.rs's router, as written there."""
    src = read("crates", "server", "src", "http", "mod.rs")
    return set(re.findall(r'\.route\(\s*"([^"]+)"', src))


def covered(path, public):
    """Whether an allowlist of (path, exact) entries lets `path` through."""
    for prefix, exact in public:
        if exact and path == prefix:
            return True
        if not exact and (path == prefix.rstrip("/") or path.startswith(prefix.rstrip("/") + "/")):
            return True
    return False


def load_k8s():
    docs = {}
    for name in sorted(os.listdir(K8S)):
        if not name.endswith(".yaml") or name == "kustomization.yaml":
            continue
        with open(os.path.join(K8S, name), encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


def container_env(container, configmaps):
    """The environment a container gets: its envFrom ConfigMaps, then its own env."""
    env = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            env.update(configmaps[ref["name"]]["data"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


def duration_ms(text):
    m = re.fullmatch(r"(\d+)(ms|s|m)?", str(text).strip())
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    return int(m.group(1)) * {"ms": 1, "s": 1000, "m": 60000, None: 1000}[m.group(2)]


def nginx_locations(text):
    """(path, exact) of every location in an nginx file, and the directives inside each."""
    out = {}
    for m in re.finditer(r"location\s+(=\s*)?(\S+)\s*\{([^}]*)\}", text):
        out[(m.group(2), bool(m.group(1)))] = m.group(3)
    return out


def main():
    known = config_variables()
    documented = documented_variables()
    default_grace = tomllib.loads(read("config", "default.toml"))["limits"]["shutdown_grace_ms"]

    # --- the variables every file sets exist --------------------------------------------------
    missing_docs = sorted(known - documented)
    check("docs/configuration.md names every key's variable", not missing_docs, ", ".join(missing_docs))
    for rel in [
        "deploy/container/compose.yaml",
        "deploy/container/env.example",
        "deploy/container/Dockerfile",
        "deploy/systemd/env.example",
        "deploy/systemd/nightmarket.service",
        "deploy/systemd/nightmarket-hub@.service",
        "deploy/systemd/nightmarket-orders.service",
        "deploy/kubernetes/config.yaml",
        "deploy/kubernetes/secret.yaml",
        "deploy/kubernetes/hub.yaml",
        "deploy/kubernetes/orders.yaml",
        "deploy/README.md",
        "scripts/cluster",
    ]:
        used = set(re.findall(r"\bNIGHTMARKET_[A-Z0-9_]*[A-Z0-9]\b", read(*rel.split("/"))))
        # Variables of the tools around the server, not of the server itself, and the ones
        # Kubernetes service links would inject, named where the files explain why they are off.
        used -= {n for n in used if n.startswith(("NIGHTMARKET_TEST_", "NIGHTMARKET_CLUSTER_"))}
        used -= {n for n in used if re.fullmatch(r"NIGHTMARKET_(HUB_)?(PORT|SERVICE_HOST)", n)}
        unknown = sorted(used - known - documented)
        check(f"{rel}: every NIGHTMARKET_* variable is a configuration variable", not unknown, ", ".join(unknown))

    # --- public paths: the nginx allowlist, the Ingress and the router agree ----------------------
    routes = router_paths()
    for path in INTERNAL_PATHS:
        check(f"the router serves {path}", path in routes)
    locations = nginx_locations(read("deploy", "nginx", "nightmarket-locations.conf"))
    nginx_public = {loc for loc, body in locations.items() if "proxy_pass" in body}
    uncovered = sorted(r for r in routes if r not in INTERNAL_PATHS and not covered(r, nginx_public))
    check("nginx passes every public route of the router", not uncovered, ", ".join(uncovered))
    leaked = sorted(p for p in INTERNAL_PATHS if covered(p, nginx_public))
    check("nginx keeps /healthz, /readyz and /metrics inside", not leaked, ", ".join(leaked))

    k8s = load_k8s()
    ingress = k8s[("Ingress", "nightmarket")]
    ingress_public = set()
    for rule in ingress["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            ingress_public.add((p["path"], p["pathType"] == "Exact"))
    normalized_nginx = {(p.rstrip("/") or "/", exact) for p, exact in nginx_public}
    check("the Ingress exposes the same paths as nginx", ingress_public == normalized_nginx,
          f"ingress {sorted(ingress_public)} vs nginx {sorted(normalized_nginx)}")

    # --- timeouts: the Ingress, nginx and deploy/README.md say the same -------------------------
    ws = locations.get(("/ws/", False), "")
    nginx_read = re.search(r"proxy_read_timeout\s+(\S+);", ws)
    nginx_send = re.search(r"proxy_send_timeout\s+(\S+);", ws)
    ann = ingress["metadata"]["annotations"]
    readme = read("deploy", "README.md")
    for what, nginx_value, key in [
        ("read", nginx_read, "nginx.ingress.kubernetes.io/proxy-read-timeout"),
        ("send", nginx_send, "nginx.ingress.kubernetes.io/proxy-send-timeout"),
    ]:
        ok = nginx_value is not None and duration_ms(nginx_value.group(1)) == duration_ms(ann.get(key, "0"))
        check(f"WebSocket {what} timeout: nginx and the Ingress agree", ok,
              f"nginx {nginx_value and nginx_value.group(1)}, ingress {ann.get(key)}")
        check(f"deploy/README.md quotes the Ingress's {key}", f'{key}: "{ann.get(key)}"' in readme)
    connect = re.search(r"proxy_connect_timeout\s+(\S+);", read("deploy", "nginx", "nightmarket-proxy-headers.conf"))
    ok = connect is not None and duration_ms(connect.group(1)) == duration_ms(
        ann.get("nginx.ingress.kubernetes.io/proxy-connect-timeout", "0"))
    check("connect timeout: nginx and the Ingress agree", ok)
    check("the Ingress asks for no session affinity",
          not any("affinity" in k or "upstream-hash-by" in k for k in ann))

    # --- Kubernetes: ports, probes, secrets, graceful termination --------------------------------
    configmaps = {n: d for (k, n), d in k8s.items() if k == "ConfigMap"}
    hub = k8s[("Deployment", "nightmarket-hub")]
    orders = k8s[("Deployment", "nightmarket-orders")]
    pod = hub["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = container_env(container, configmaps)
    listen_port = int(env["NIGHTMARKET_LISTEN"].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    check("hub: containerPort `http` is NIGHTMARKET_LISTEN's port", ports.get("http") == listen_port,
          f"{ports} vs {listen_port}")
    check("hub: runs `serve`", container.get("args") == ["serve"])
    ready = container["readinessProbe"]["httpGet"]
    live = container["livenessProbe"]["httpGet"]
    check("hub: readiness on /readyz", ready["path"] == "/readyz" and ready["port"] in ("http", listen_port))
    check("hub: liveness on /healthz", live["path"] == "/healthz" and live["port"] in ("http", listen_port))
    check("hub: the order service is off", str(env.get("NIGHTMARKET_ORDERS_IN_SERVE")).lower() == "false")
    check("hub: dev is off", str(env.get("NIGHTMARKET_DEV")).lower() == "false")
    for key in ("NIGHTMARKET_REDIS_URL", "NIGHTMARKET_DATABASE_URL", "NIGHTMARKET_PUBLIC_URL", "NIGHTMARKET_AUTH_SECRET"):
        check(f"hub: sets {key}", bool(env.get(key)))
    secret = k8s[("Secret", "nightmarket-secrets")]
    for key in ("NIGHTMARKET_AUTH_SECRET", "NIGHTMARKET_DATABASE_URL"):
        refs = [e["valueFrom"]["secretKeyRef"] for e in container.get("env", []) if e["name"] == key]
        check(f"hub: {key} comes from the Secret", bool(refs) and refs[0]["name"] == "nightmarket-secrets"
              and refs[0]["key"] in secret["stringData"])
    grace = int(env.get("NIGHTMARKET_LIMITS_SHUTDOWN_GRACE_MS", default_grace))
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    pre_stop_ms = int(pre_stop[1]) * 1000 if pre_stop[0] == "sleep" else 0
    budget = pod["terminationGracePeriodSeconds"] * 1000
    check("hub: terminationGracePeriodSeconds covers preStop + limits.shutdown_grace_ms",
          budget >= pre_stop_ms + grace + STOP_MARGIN_MS, f"{budget} ms < {pre_stop_ms} + {grace} + {STOP_MARGIN_MS}")
    check("hub: at least two replicas", hub["spec"]["replicas"] >= 2)
    pdbs = [d for (k, _), d in k8s.items() if k == "PodDisruptionBudget"]
    check("hub: a PodDisruptionBudget selects the hubs", any(
        p["spec"]["selector"]["matchLabels"] == hub["spec"]["selector"]["matchLabels"] for p in pdbs))
    services = {n: d for (k, n), d in k8s.items() if k == "Service"}
    backends = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    check("the Ingress routes to the hub Service", backends == {"nightmarket-hub"}
          and services["nightmarket-hub"]["spec"]["selector"] == hub["spec"]["selector"]["matchLabels"])
    check("the hub Service has no session affinity",
          services["nightmarket-hub"]["spec"].get("sessionAffinity", "None") == "None")
    (ocontainer,) = orders["spec"]["template"]["spec"]["containers"]
    oenv = container_env(ocontainer, configmaps)
    check("orders: runs `orders`", ocontainer.get("args") == ["orders"])
    for key in ("NIGHTMARKET_REDIS_URL", "NIGHTMARKET_DATABASE_URL", "NIGHTMARKET_AUTH_SECRET"):
        check(f"orders: sets {key}", bool(oenv.get(key)))
    for (kind, name), doc in k8s.items():
        if kind in ("Deployment", "StatefulSet"):
            check(f"{kind} {name}: enableServiceLinks is false (no stray *_PORT variables)",
                  doc["spec"]["template"]["spec"].get("enableServiceLinks") is False)
    redis = k8s[("StatefulSet", "redis")]["spec"]["template"]["spec"]["containers"][0]["args"]
    check("Redis StatefulSet: AOF on", "--appendonly" in redis and redis[redis.index("--appendonly") + 1] == "yes")
    redis_url = env["NIGHTMARKET_REDIS_URL"]
    check("NIGHTMARKET_REDIS_URL names the Redis Service", redis_url.startswith("redis://redis:"))
    check("the Secret's database URL names the PostgreSQL Service",
          "@postgres:5432/" in secret["stringData"]["NIGHTMARKET_DATABASE_URL"])
    with open(os.path.join(K8S, "kustomization.yaml"), encoding="utf-8") as f:
        listed = set(yaml.safe_load(f)["resources"])
    present = {n for n in os.listdir(K8S) if n.endswith(".yaml") and n != "kustomization.yaml"}
    check("kustomization.yaml lists every manifest", listed == present, f"{sorted(listed ^ present)}")

    # --- compose ---------------------------------------------------------------------------------
    with open(os.path.join(DEPLOY, "container", "compose.yaml"), encoding="utf-8") as f:
        compose = yaml.safe_load(f)["services"]
    hubs = {n: s for n, s in compose.items() if s.get("command") == ["serve"]}
    check("compose: two or more hubs", len(hubs) >= 2, f"{sorted(hubs)}")
    check("compose: one order service", [s.get("command") for s in compose.values()].count(["orders"]) == 1)
    dockerfile = read("deploy", "container", "Dockerfile")
    image_port = int(re.search(r"NIGHTMARKET_LISTEN=[^:\s]+:(\d+)", dockerfile).group(1))
    check("Dockerfile: EXPOSE is NIGHTMARKET_LISTEN's port", f"EXPOSE {image_port}" in dockerfile)
    nginx_conf = read("deploy", "container", "nginx.conf")
    upstream = set(re.findall(r"server\s+([\w.-]+):(\d+)", nginx_conf))
    check("compose: nginx balances over every hub, on the image's port",
          upstream == {(n, str(image_port)) for n in hubs}, f"{sorted(upstream)}")
    for name, svc in hubs.items():
        henv = svc["environment"]
        test = " ".join(svc["healthcheck"]["test"])
        check(f"compose {name}: health check on /readyz at the image's port",
              f"127.0.0.1:{image_port}/readyz" in test)
        check(f"compose {name}: the order service is off", str(henv.get("NIGHTMARKET_ORDERS_IN_SERVE")).lower() == "false")
        for key in ("NIGHTMARKET_REDIS_URL", "NIGHTMARKET_DATABASE_URL", "NIGHTMARKET_AUTH_SECRET", "NIGHTMARKET_PUBLIC_URL"):
            check(f"compose {name}: sets {key}", bool(henv.get(key)))
        hgrace = int(henv.get("NIGHTMARKET_LIMITS_SHUTDOWN_GRACE_MS", default_grace))
        check(f"compose {name}: stop_grace_period covers limits.shutdown_grace_ms",
              duration_ms(svc["stop_grace_period"]) >= hgrace + STOP_MARGIN_MS)
    redis_cmd = compose["redis"]["command"]
    check("compose: Redis with AOF on", redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes")
    volumes = compose["balancer"]["volumes"]
    check("compose: the balancer mounts the shared locations",
          any("nightmarket-locations.conf" in v for v in volumes) and any("nightmarket-proxy-headers.conf" in v for v in volumes))

    # --- systemd ---------------------------------------------------------------------------------
    for unit in ("nightmarket.service", "nightmarket-hub@.service", "nightmarket-orders.service"):
        text = read("deploy", "systemd", unit)
        stop = re.search(r"^TimeoutStopSec=(\S+)", text, re.M)
        check(f"systemd {unit}: TimeoutStopSec covers limits.shutdown_grace_ms",
              stop is not None and duration_ms(stop.group(1)) >= default_grace + STOP_MARGIN_MS)
    hub_unit = read("deploy", "systemd", "nightmarket-hub@.service")
    check("systemd hub: `serve` with the order service off",
          "nightmarket serve" in hub_unit and "NIGHTMARKET_ORDERS_IN_SERVE=false" in hub_unit)
    check("systemd orders: `orders`", "nightmarket orders" in read("deploy", "systemd", "nightmarket-orders.service"))
    env_example = read("deploy", "systemd", "env.example")
    set_there = set(re.findall(r"^(NIGHTMARKET_[A-Z0-9_]+)=", env_example, re.M))
    per_unit = {"NIGHTMARKET_LISTEN", "NIGHTMARKET_DATA_DIR", "NIGHTMARKET_ORDERS_IN_SERVE"}
    check("systemd env.example leaves the per-unit variables to the units", not (set_there & per_unit))
    for key in ("NIGHTMARKET_AUTH_SECRET", "NIGHTMARKET_DEV", "NIGHTMARKET_REDIS_URL",
                "NIGHTMARKET_DATABASE_URL", "NIGHTMARKET_PUBLIC_URL"):
        check(f"systemd env.example sets {key}", key in set_there)
    site = read("deploy", "systemd", "nightmarket-nginx.conf")
    hub_ports = re.findall(r"server\s+127\.0\.0\.1:(\d+)", site)
    check("systemd nginx site: two or more hubs", len(hub_ports) >= 2)
    check("deploy/README.md enables the hub instances nginx lists",
          all(f"nightmarket-hub@{p}" in readme for p in hub_ports))

    # --- the image's build context holds what the binary compiles in -----------------------------
    ignore = [l.strip() for l in read("deploy", "container", "Dockerfile.dockerignore").splitlines()
              if l.strip() and not l.startswith("#")]

    def ignored(rel):
        return any(fnmatch.fnmatch(rel, p) or rel == p or rel.startswith(p.rstrip("/") + "/") for p in ignore)

    with tempfile.TemporaryDirectory() as ctx:
        for dirpath, dirnames, filenames in os.walk(ROOT):
            rel_dir = os.path.relpath(dirpath, ROOT)
            rel_dir = "" if rel_dir == "." else rel_dir
            dirnames[:] = [d for d in dirnames if not ignored(os.path.join(rel_dir, d))]
            for f in filenames:
                rel = os.path.join(rel_dir, f)
                if not ignored(rel):
                    os.makedirs(os.path.join(ctx, rel_dir), exist_ok=True)
                    shutil.copy2(os.path.join(ROOT, rel), os.path.join(ctx, rel))
        needed = ["Cargo.toml", "Cargo.lock", "config/default.toml", "web/pages", "web/assets", "web/client"]
        absent = [n for n in needed if not os.path.exists(os.path.join(ctx, n))]
        check("image build context holds the workspace, config/ and web/", not absent, ", ".join(absent))
        meta = subprocess.run(
            ["cargo", "metadata", "--locked", "--offline", "--no-deps", "--format-version", "1"],
            cwd=ctx, capture_output=True, text=True)
        check("image build context: the workspace resolves (cargo metadata --locked)", meta.returncode == 0,
              meta.stderr.strip()[-400:])

    failed = results.count(False)
    print(f"deploy: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
