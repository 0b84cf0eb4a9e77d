{
  "targets": [
    {
      "target_name": "echoplex",
      "sources": ["native/addon.c", "native/glue.c", "native/echo_engine.c", "native/bench_engine.c", "native/socket_engine.c", "native/udp_engine.c", "native/tls.c", "native/websocket.c", "native/shared_port.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wpedantic"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
