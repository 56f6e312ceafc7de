{
  "targets": [
    {
      "target_name": "baton_relay",
      "sources": ["relay.c", "relay_js.c", "scan.c", "pin.c", "balance.c"],
      "libraries": ["-lpthread"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
