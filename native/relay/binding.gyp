{
  "targets": [
    {
      "target_name": "baton_relay",
      "sources": ["relay.c", "relay_js.c", "batch.c", "scan.c", "pin.c", "balance.c"],
      "libraries": ["-lpthread", "-l:liburing.a"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
