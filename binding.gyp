{
  "targets": [
    {
      "target_name": "echo_engine",
      "sources": ["native/echo_engine.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
