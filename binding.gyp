{
  "targets": [
    {
      "target_name": "ovshift_native",
      "sources": ["src/native/ovshift.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"]
    },
    {
      "target_name": "ovshift",
      "type": "executable",
      "sources": ["src/front/ovshift.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu11"],
      "defines": ["_GNU_SOURCE", "OVSHIFT_NODE=\"<!(node -p process.execPath)\""]
    }
  ]
}
