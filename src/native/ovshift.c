/*
 * ovshift native addon. The contract (names, argument order, sync/async, error shape) is
 * src/native/index.ts.
 *
 * Almost all of it is syscalls Node lacks, as thin N-API wrappers: statx, the *at() family
 * (mknodat, renameat2, linkat, openat2, open_tree, the *xattrat calls…), OFD and flock locks,
 * fallocate, copy_file_range, FICLONE, preadv2/pwritev2 with RWF_NOWAIT, mount/umount2,
 * SCM_RIGHTS fd passing, the FUSE passthrough ioctls, malloc_trim. These decide nothing:
 * arguments are converted, the syscall is made (retried on EINTR), and a failure becomes a
 * Node-shaped error (code 'ENOENT', errno -2, syscall 'statx'). The Promise-returning ones run
 * on the libuv threadpool (napi_async_work) and never touch JS memory there: paths, names and
 * values are copied into the call before it is queued. The *Sync twins run on the calling
 * thread and return -errno instead of throwing. Small helpers that stay at the syscall level:
 * the size probe and ERANGE retry of xattr reads (read_xattr_buffer), the *xattrat fallback
 * through /proc/self/fd/<dirfd>/<path> on kernels before 6.13, packing a directory listing
 * into one buffer (one call and one copy per listing).
 *
 * What is not a syscall, and must be in C because JS cannot do it:
 *
 * - devReader (uv_poll + read + busy-poll): Node can neither poll an arbitrary fd for
 *   readability on the main loop nor read a non-blocking character device there (fs.read goes
 *   through the threadpool, net.Socket refuses a char device). Requests are read in batches in
 *   the poll callback; with the optional busy-poll (setSpin) one at a time, each answered one
 *   followed by a spin for the next that reads it at once when it comes: the spin must run
 *   without returning to the loop, so it lives next to the read.
 * - ENODEV mapping in devReader: read() = 0 counts as ENODEV, EINTR/ENOENT (an interrupted
 *   request) are retried, and libuv's UV_EBADF from POLLERR (what an unmounted device says)
 *   is replaced by the errno read() reported. Only the C side sees both the poll status and
 *   the read's errno.
 * - The notifier thread (notifyWrite): a notify_inval_entry write may block until the kernel
 *   gets a directory lock that a request we have not answered yet holds; the answer comes
 *   from the main loop, whose fs work would queue behind blocked writes in a full libuv pool.
 *   A pthread of our own (results handed back with uv_async) can block without starving
 *   anyone. Node offers no thread outside the pool short of a Worker.
 * - The O_NOATIME retry when listing a directory (pack_directory): open with O_NOATIME so
 *   reading a layer does not change its atime, and again without it on EPERM (not the
 *   owner, no CAP_FOWNER). Node's opendir takes no flags.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <linux/falloc.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/file.h>
#include <sys/sendfile.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

/* <linux/fs.h> clashes with glibc's <sys/mount.h>, so FICLONE and the inode flag ioctls are
 * spelled out here (include/uapi/linux/fs.h). */
#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int)
#endif
struct ovshift_fsxattr {
  uint32_t fsx_xflags;
  uint32_t fsx_extsize;
  uint32_t fsx_nextents;
  uint32_t fsx_projid;
  uint32_t fsx_cowextsize;
  unsigned char fsx_pad[8];
};
#define OVSHIFT_FS_IOC_GETFLAGS _IOR('f', 1, long)
#define OVSHIFT_FS_IOC_SETFLAGS _IOW('f', 2, long)
#define OVSHIFT_FS_IOC_FSGETXATTR _IOR('X', 31, struct ovshift_fsxattr)
#define OVSHIFT_FS_IOC_FSSETXATTR _IOW('X', 32, struct ovshift_fsxattr)

/* FUSE passthrough (protocol 7.40); the installed <linux/fuse.h> predates it. */
struct ovshift_fuse_backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
#define OVSHIFT_FUSE_DEV_IOC_MAGIC 229
#define OVSHIFT_FUSE_DEV_IOC_BACKING_OPEN \
  _IOW(OVSHIFT_FUSE_DEV_IOC_MAGIC, 1, struct ovshift_fuse_backing_map)
#define OVSHIFT_FUSE_DEV_IOC_BACKING_CLOSE _IOW(OVSHIFT_FUSE_DEV_IOC_MAGIC, 2, uint32_t)

#define MAX_ARGS 8

/* ---------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------- */

/* An Error shaped like Node's fs errors: "ENOENT: no such file or directory, lgetxattr". */
static napi_value errno_error(napi_env env, int err, const char *syscall) {
  const char *code = strerrorname_np(err);
  const char *desc = strerrordesc_np(err);
  if (code == NULL) code = "UNKNOWN";
  char text[128];
  if (desc == NULL) {
    snprintf(text, sizeof text, "unknown system error %d", err);
  } else {
    /* Node's (libuv's) wording starts lower-case; keep acronyms such as "RPC" intact. */
    snprintf(text, sizeof text, "%s", desc);
    if (text[0] >= 'A' && text[0] <= 'Z' && text[1] >= 'a' && text[1] <= 'z') text[0] += 'a' - 'A';
  }
  char message[256];
  snprintf(message, sizeof message, "%s: %s, %s", code, text, syscall);

  napi_value code_v, message_v, errno_v, syscall_v, error;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_v) != napi_ok ||
      napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &message_v) != napi_ok ||
      napi_create_error(env, code_v, message_v, &error) != napi_ok ||
      napi_create_int32(env, -err, &errno_v) != napi_ok ||
      napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_v) != napi_ok ||
      napi_set_named_property(env, error, "errno", errno_v) != napi_ok ||
      napi_set_named_property(env, error, "syscall", syscall_v) != napi_ok) {
    return NULL;
  }
  return error;
}

static napi_value throw_errno(napi_env env, int err, const char *syscall) {
  napi_value error = errno_error(env, err, syscall);
  if (error != NULL) napi_throw(env, error);
  return NULL;
}

/* After a failed napi_* call: make sure something is thrown. */
static napi_value throw_napi_failure(napi_env env) {
  /* Read the error info first: every napi_* call, even a successful one, overwrites it. */
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  char message[128];
  snprintf(message, sizeof message, "ovshift native: %s",
      info != NULL && info->error_message != NULL ? info->error_message : "N-API call failed");
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, NULL, message);
  return NULL;
}

static bool fail_napi(napi_env env) {
  throw_napi_failure(env);
  return false;
}

static bool fail_errno(napi_env env, int err, const char *syscall) {
  throw_errno(env, err, syscall);
  return false;
}

#define NAPI_OK(call)                                    \
  do {                                                   \
    if ((call) != napi_ok) return throw_napi_failure(env); \
  } while (0)

/* An exception thrown by a callback we invoked from a libuv callback has no JS caller to land
 * in: hand it to process 'uncaughtException', as Node does for its own handles. */
static void report_callback_exception(napi_env env, napi_status status) {
  if (status != napi_pending_exception) return;
  napi_value exception;
  if (napi_get_and_clear_last_exception(env, &exception) == napi_ok) {
    napi_fatal_exception(env, exception);
  }
}

/* ---------------------------------------------------------------------------------------
 * Argument conversion
 * ------------------------------------------------------------------------------------- */

static bool throw_arg_type(napi_env env, size_t index, const char *expected) {
  char message[96];
  snprintf(message, sizeof message, "argument %zu must be %s", index + 1, expected);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return false;
}

/* A path or xattr name: Buffer (raw bytes) or string (UTF-8), copied and NUL-terminated. */
static bool copy_path(napi_env env, napi_value value, size_t index, char **out) {
  bool is_buffer = false;
  napi_valuetype type;
  size_t len = 0;
  char *copy;
  if (napi_is_buffer(env, value, &is_buffer) != napi_ok) return fail_napi(env);
  if (is_buffer) {
    void *data;
    if (napi_get_buffer_info(env, value, &data, &len) != napi_ok) return fail_napi(env);
    copy = malloc(len + 1);
    if (copy == NULL) return fail_errno(env, ENOMEM, "malloc");
    if (len > 0) memcpy(copy, data, len);
  } else {
    if (napi_typeof(env, value, &type) != napi_ok) return fail_napi(env);
    if (type != napi_string) return throw_arg_type(env, index, "a Buffer or a string");
    if (napi_get_value_string_utf8(env, value, NULL, 0, &len) != napi_ok) return fail_napi(env);
    copy = malloc(len + 1);
    if (copy == NULL) return fail_errno(env, ENOMEM, "malloc");
    if (napi_get_value_string_utf8(env, value, copy, len + 1, &len) != napi_ok) {
      free(copy);
      return fail_napi(env);
    }
  }
  copy[len] = '\0';
  if (memchr(copy, '\0', len) != NULL) {
    free(copy);
    char message[96];
    snprintf(message, sizeof message, "argument %zu must not contain NUL bytes", index + 1);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", message);
    return false;
  }
  *out = copy;
  return true;
}

/* Buffer contents, copied (the copy outlives any GC of the Buffer). */
static bool copy_bytes(napi_env env, napi_value value, size_t index, void **out, size_t *out_len) {
  bool is_buffer = false;
  void *data;
  size_t len;
  if (napi_is_buffer(env, value, &is_buffer) != napi_ok) return fail_napi(env);
  if (!is_buffer) return throw_arg_type(env, index, "a Buffer");
  if (napi_get_buffer_info(env, value, &data, &len) != napi_ok) return fail_napi(env);
  void *copy = malloc(len > 0 ? len : 1);
  if (copy == NULL) return fail_errno(env, ENOMEM, "malloc");
  if (len > 0) memcpy(copy, data, len);
  *out = copy;
  *out_len = len;
  return true;
}

static bool convert_arg(napi_env env, napi_value value, char kind, size_t index, va_list *ap) {
  napi_status status;
  switch (kind) {
    case 'i':
      status = napi_get_value_int32(env, value, va_arg(*ap, int32_t *));
      return status == napi_ok || throw_arg_type(env, index, "a number");
    case 'u':
      status = napi_get_value_uint32(env, value, va_arg(*ap, uint32_t *));
      return status == napi_ok || throw_arg_type(env, index, "a number");
    case 'n':
      status = napi_get_value_int64(env, value, va_arg(*ap, int64_t *));
      return status == napi_ok || throw_arg_type(env, index, "a number");
    case 'B': {
      bool lossless = false;
      status = napi_get_value_bigint_int64(env, value, va_arg(*ap, int64_t *), &lossless);
      if (status != napi_ok) return throw_arg_type(env, index, "a bigint");
      if (!lossless) {
        napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "bigint argument does not fit in 64 bits");
        return false;
      }
      return true;
    }
    case 'b':
      status = napi_get_value_bool(env, value, va_arg(*ap, bool *));
      return status == napi_ok || throw_arg_type(env, index, "a boolean");
    case 'p':
      return copy_path(env, value, index, va_arg(*ap, char **));
    case 'v': {
      void **data = va_arg(*ap, void **);
      size_t *len = va_arg(*ap, size_t *);
      return copy_bytes(env, value, index, data, len);
    }
    case 'o':
      *va_arg(*ap, napi_value *) = value;
      return true;
    default:
      napi_throw_error(env, NULL, "ovshift: bad argument format");
      return false;
  }
}

/*
 * Converts the call's arguments by `format`, one letter per argument:
 *   i int32_t*   u uint32_t*   n int64_t* (number)   B int64_t* (bigint)   b bool*
 *   p char** (Buffer or string, copied, NUL-terminated; the caller frees)
 *   v void**, size_t* (Buffer contents, copied; the caller frees)   o napi_value* (as is)
 * On failure an exception is pending; copies made before the failing argument are already
 * stored in their out-pointers for the caller to free.
 */
static bool parse_args(napi_env env, napi_callback_info info, const char *format, ...) {
  napi_value argv[MAX_ARGS];
  size_t argc = MAX_ARGS;
  size_t wanted = strlen(format);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return fail_napi(env);
  if (argc < wanted) {
    char message[64];
    snprintf(message, sizeof message, "expected %zu arguments, got %zu", wanted, argc);
    napi_throw_type_error(env, "ERR_MISSING_ARGS", message);
    return false;
  }
  va_list ap;
  va_start(ap, format);
  bool ok = true;
  for (size_t i = 0; ok && i < wanted; i++) ok = convert_arg(env, argv[i], format[i], i, &ap);
  va_end(ap);
  return ok;
}

static bool is_function(napi_env env, napi_value value) {
  napi_valuetype type;
  return napi_typeof(env, value, &type) == napi_ok && type == napi_function;
}

/* ---------------------------------------------------------------------------------------
 * Result values
 * ------------------------------------------------------------------------------------- */

static napi_value js_undefined(napi_env env) {
  napi_value v = NULL;
  napi_get_undefined(env, &v);
  return v;
}

static napi_value js_null(napi_env env) {
  napi_value v = NULL;
  napi_get_null(env, &v);
  return v;
}

static napi_value js_i64(napi_env env, int64_t n) {
  napi_value v = NULL;
  napi_create_int64(env, n, &v);
  return v;
}

static napi_value js_big_i64(napi_env env, int64_t n) {
  napi_value v = NULL;
  napi_create_bigint_int64(env, n, &v);
  return v;
}

#define PROP(name, value) \
  { (name), NULL, NULL, NULL, NULL, (value), napi_default_jsproperty, NULL }

static napi_value flock_object(napi_env env, const struct flock *l) {
  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok) return NULL;
  const napi_property_descriptor props[] = {
    PROP("type", js_i64(env, l->l_type)),
    PROP("start", js_big_i64(env, l->l_start)),
    PROP("len", js_big_i64(env, l->l_len)),
    PROP("pid", js_i64(env, l->l_pid)),
  };
  if (napi_define_properties(env, obj, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return obj;
}

/* ---------------------------------------------------------------------------------------
 * Asynchronous calls: one struct per call, run on the libuv threadpool, settling a Promise.
 * Each wrapper fills the fields its syscall needs; everything owned is freed in call_free.
 * ------------------------------------------------------------------------------------- */

typedef struct call call_t;

struct call {
  napi_async_work work;
  napi_deferred deferred;
  const char *syscall;                           /* for the error; static string */
  void (*run)(call_t *);                         /* threadpool: the syscall, sets err/outputs */
  napi_value (*result)(napi_env, const call_t *); /* main thread; NULL resolves undefined */
  int err;                                       /* errno of the failure, 0 on success */

  /* inputs */
  int32_t fd, fd2;                 /* fd or dirfd; the second one of two-fd calls */
  char *path, *path2, *name;       /* owned copies */
  char *source, *fstype, *data;    /* mount(2); owned copies */
  void *value;                     /* owned: xattr value in, or value/name list out */
  size_t value_len;
  int32_t flags;
  uint32_t mode, mask, major, minor;
  bool follow;
  int64_t offset, offset2, length;
  struct timespec times[2];
  int64_t uid, gid;
  int32_t cmd;

  /* outputs */
  int64_t ret;
  struct statx stx;
  struct flock lock;
};

/* Runs `expr` (a syscall returning -1/errno on failure), retrying on EINTR. */
#define RUN_SYSCALL(c, expr)                           \
  do {                                                 \
    long rc_;                                          \
    do rc_ = (long)(expr);                             \
    while (rc_ < 0 && errno == EINTR);                 \
    if (rc_ < 0) (c)->err = errno;                     \
    else (c)->ret = rc_;                               \
  } while (0)

static call_t *call_new(napi_env env, const char *syscall, void (*run)(call_t *)) {
  call_t *c = calloc(1, sizeof *c);
  if (c == NULL) {
    throw_errno(env, ENOMEM, "malloc");
    return NULL;
  }
  c->syscall = syscall;
  c->run = run;
  return c;
}

static void call_free(call_t *c) {
  free(c->path);
  free(c->path2);
  free(c->name);
  free(c->source);
  free(c->fstype);
  free(c->data);
  free(c->value);
  free(c);
}

static void call_execute(napi_env env, void *data) {
  call_t *c = data;
  c->run(c);
}

static void call_complete(napi_env env, napi_status status, void *data) {
  call_t *c = data;
  napi_value value = NULL;
  bool resolved = false;
  if (status == napi_ok && c->err == 0) {
    value = c->result != NULL ? c->result(env, c) : js_undefined(env);
    if (value != NULL) resolved = napi_resolve_deferred(env, c->deferred, value) == napi_ok;
  }
  if (!resolved) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_get_and_clear_last_exception(env, &value);
    } else {
      int err = status == napi_cancelled ? ECANCELED : c->err != 0 ? c->err : ENOMEM;
      value = errno_error(env, err, c->syscall);
    }
    napi_reject_deferred(env, c->deferred, value);
  }
  napi_delete_async_work(env, c->work);
  call_free(c);
}

/* Queues the call and returns its Promise; on failure frees the call and throws. */
static napi_value call_start(napi_env env, call_t *c) {
  napi_value name, promise;
  if (napi_create_string_utf8(env, c->syscall, NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, call_execute, call_complete, c, &c->work) != napi_ok) {
    call_free(c);
    return throw_napi_failure(env);
  }
  if (napi_create_promise(env, &c->deferred, &promise) != napi_ok) {
    napi_delete_async_work(env, c->work);
    call_free(c);
    return throw_napi_failure(env);
  }
  if (napi_queue_async_work(env, c->work) != napi_ok) {
    napi_reject_deferred(env, c->deferred, errno_error(env, ECANCELED, c->syscall));
    napi_delete_async_work(env, c->work);
    call_free(c);
  }
  return promise;
}

/*
 * Runs a parsed call on the calling thread instead: the *Sync twins, for layers on local
 * filesystems (see statxSync). Returns the result, or -errno as a number; never throws for
 * a failed syscall.
 */
static napi_value call_run_now(napi_env env, call_t *c) {
  int err;
  do {
    c->err = 0;
    c->run(c);
    err = c->err;
  } while (err == EINTR);
  napi_value v = err != 0 ? js_i64(env, -err) : c->result != NULL ? c->result(env, c) : js_i64(env, 0);
  call_free(c);
  return v;
}

/* Defines js_<name> (Promise, thread pool) and js_<name>_sync (calling thread) from one body
 * that ends in FINISH(c). */
#define DUAL_CALL(name) \
  static napi_value name##_body(napi_env env, napi_callback_info info, bool now); \
  static napi_value name(napi_env env, napi_callback_info info) { return name##_body(env, info, false); } \
  static napi_value name##_sync(napi_env env, napi_callback_info info) { return name##_body(env, info, true); } \
  static napi_value name##_body(napi_env env, napi_callback_info info, bool now)
#define FINISH(c) return now ? call_run_now(env, (c)) : call_start(env, (c))

/* Declares `c`, a fresh call with the wrapper's arguments parsed into it; returns on failure. */
#define ASYNC_CALL(syscall_name, run_fn, result_fn, format, ...)      \
  call_t *c = call_new(env, (syscall_name), (run_fn));                \
  if (c == NULL) return NULL;                                         \
  c->result = (result_fn);                                            \
  if (!parse_args(env, info, (format), __VA_ARGS__)) {                \
    call_free(c);                                                     \
    return NULL;                                                      \
  }

static napi_value result_number(napi_env env, const call_t *c) { return js_i64(env, c->ret); }
static napi_value result_bigint(napi_env env, const call_t *c) { return js_big_i64(env, c->ret); }
static napi_value result_lock(napi_env env, const call_t *c) { return flock_object(env, &c->lock); }
static napi_value result_null(napi_env env, const call_t *c) { return js_null(env); }

static napi_value result_value(napi_env env, const call_t *c) {
  napi_value buffer = NULL;
  if (c->value_len == 0) {
    void *unused;
    napi_create_buffer(env, 0, &unused, &buffer);
  } else {
    napi_create_buffer_copy(env, c->value_len, c->value, NULL, &buffer);
  }
  return buffer;
}

/* ---------------------------------------------------------------------------------------
 * Mounting and fd passing
 * ------------------------------------------------------------------------------------- */

static void run_mount(call_t *c) {
  RUN_SYSCALL(c, mount(c->source, c->path, c->fstype, (unsigned long)(uint32_t)c->flags, c->data));
}

static napi_value js_mount(napi_env env, napi_callback_info info) {
  ASYNC_CALL("mount", run_mount, NULL, "pppip", &c->source, &c->path, &c->fstype, &c->flags, &c->data);
  return call_start(env, c);
}

static void run_umount2(call_t *c) { RUN_SYSCALL(c, umount2(c->path, c->flags)); }

static napi_value js_umount2(napi_env env, napi_callback_info info) {
  ASYNC_CALL("umount2", run_umount2, NULL, "pi", &c->path, &c->flags);
  return call_start(env, c);
}

static napi_value js_socketpair(napi_env env, napi_callback_info info) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) return throw_errno(env, errno, "socketpair");
  napi_value array, a, b;
  if (napi_create_array_with_length(env, 2, &array) != napi_ok ||
      napi_create_int32(env, fds[0], &a) != napi_ok || napi_create_int32(env, fds[1], &b) != napi_ok ||
      napi_set_element(env, array, 0, a) != napi_ok || napi_set_element(env, array, 1, b) != napi_ok) {
    close(fds[0]);
    close(fds[1]);
    return throw_napi_failure(env);
  }
  return array;
}

/* Receives one SCM_RIGHTS fd (close-on-exec). End of stream without one: ECONNRESET; a
 * message without one: EPROTO. Any extra fds in the message are closed. */
static void run_recv_fd(call_t *c) {
  char byte;
  struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * 8)];
  } control;
  struct msghdr msg = {
    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf,
  };
  ssize_t n;
  do n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    c->err = errno;
    return;
  }
  int received = -1;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
      if (received < 0) received = fd;
      else close(fd);
    }
  }
  if (received >= 0) c->ret = received;
  else c->err = n == 0 ? ECONNRESET : EPROTO;
}

static napi_value js_recv_fd(napi_env env, napi_callback_info info) {
  ASYNC_CALL("recvmsg", run_recv_fd, result_number, "i", &c->fd);
  return call_start(env, c);
}

static napi_value js_set_nonblock(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!parse_args(env, info, "i", &fd)) return NULL;
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return throw_errno(env, errno, "fcntl");
  return js_undefined(env);
}

/* fcntl(fd, F_SETFL, flags): 0 or -errno. */
static napi_value js_set_status_flags_sync(napi_env env, napi_callback_info info) {
  int32_t fd, flags;
  if (!parse_args(env, info, "ii", &fd, &flags)) return NULL;
  return js_i64(env, fcntl(fd, F_SETFL, flags) == 0 ? 0 : -errno);
}

/* ---------------------------------------------------------------------------------------
 * Synchronous metadata calls, for layers on local filesystems only: answered from the
 * dentry and inode caches in about a microsecond, where a thread-pool round trip costs tens.
 * They never throw for a failed syscall: they return -errno, so a miss costs no exception.
 * ------------------------------------------------------------------------------------- */

enum {
  SX_MASK, SX_MODE, SX_NLINK, SX_UID, SX_GID, SX_RDEV_MAJOR, SX_RDEV_MINOR, SX_DEV_MAJOR,
  SX_DEV_MINOR, SX_INO, SX_INO_HI, SX_INO_LO, SX_SIZE, SX_BLOCKS, SX_BLKSIZE, SX_ATIME_SEC,
  SX_ATIME_NSEC, SX_MTIME_SEC, SX_MTIME_NSEC, SX_CTIME_SEC, SX_CTIME_NSEC, SX_BTIME_SEC,
  SX_BTIME_NSEC, SX_ATTRIBUTES, SX_FIELDS
};

static void fill_statx_array(double *o, const struct statx *s) {
  o[SX_MASK] = s->stx_mask;
  o[SX_MODE] = s->stx_mode;
  o[SX_NLINK] = s->stx_nlink;
  o[SX_UID] = s->stx_uid;
  o[SX_GID] = s->stx_gid;
  o[SX_RDEV_MAJOR] = s->stx_rdev_major;
  o[SX_RDEV_MINOR] = s->stx_rdev_minor;
  o[SX_DEV_MAJOR] = s->stx_dev_major;
  o[SX_DEV_MINOR] = s->stx_dev_minor;
  o[SX_INO] = (double)s->stx_ino;
  o[SX_INO_HI] = (double)(s->stx_ino >> 32);
  o[SX_INO_LO] = (double)(s->stx_ino & 0xffffffffu);
  o[SX_SIZE] = (double)s->stx_size;
  o[SX_BLOCKS] = (double)s->stx_blocks;
  o[SX_BLKSIZE] = s->stx_blksize;
  o[SX_ATIME_SEC] = (double)s->stx_atime.tv_sec;
  o[SX_ATIME_NSEC] = s->stx_atime.tv_nsec;
  o[SX_MTIME_SEC] = (double)s->stx_mtime.tv_sec;
  o[SX_MTIME_NSEC] = s->stx_mtime.tv_nsec;
  o[SX_CTIME_SEC] = (double)s->stx_ctime.tv_sec;
  o[SX_CTIME_NSEC] = s->stx_ctime.tv_nsec;
  o[SX_BTIME_SEC] = (double)s->stx_btime.tv_sec;
  o[SX_BTIME_NSEC] = s->stx_btime.tv_nsec;
  o[SX_ATTRIBUTES] = (double)s->stx_attributes;
}

/* The async statx/fstatx result: a fresh Float64Array laid out as statxSync fills it. */
static napi_value result_statx(napi_env env, const call_t *c) {
  napi_value buffer, array;
  void *data;
  if (napi_create_arraybuffer(env, SX_FIELDS * sizeof(double), &data, &buffer) != napi_ok ||
      napi_create_typedarray(env, napi_float64_array, SX_FIELDS, buffer, 0, &array) != napi_ok) {
    return NULL;
  }
  fill_statx_array(data, &c->stx);
  return array;
}

static bool float64_out(napi_env env, napi_value value, double **out) {
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, value, &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_float64_array || length < SX_FIELDS) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected a Float64Array of statxFields elements");
    return false;
  }
  *out = data;
  return true;
}

/* statxSync(dirfd, path, flags, mask, out: Float64Array) -> 0 | -errno */
static napi_value js_statx_sync(napi_env env, napi_callback_info info) {
  int32_t dirfd, flags;
  uint32_t mask;
  char *path = NULL;
  napi_value out_v;
  double *out;
  if (!parse_args(env, info, "ipiuo", &dirfd, &path, &flags, &mask, &out_v) || !float64_out(env, out_v, &out)) {
    free(path);
    return NULL;
  }
  struct statx stx;
  int res = statx(dirfd, path, flags, mask, &stx) == 0 ? 0 : -errno;
  free(path);
  if (res == 0) fill_statx_array(out, &stx);
  return js_i64(env, res);
}

/* fstatxSync(fd, out: Float64Array) -> 0 | -errno */
static napi_value js_fstatx_sync(napi_env env, napi_callback_info info) {
  int32_t fd;
  napi_value out_v;
  double *out;
  if (!parse_args(env, info, "io", &fd, &out_v) || !float64_out(env, out_v, &out)) return NULL;
  struct statx stx;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_BTIME, &stx) != 0) return js_i64(env, -errno);
  fill_statx_array(out, &stx);
  return js_i64(env, 0);
}

/*
 * A directory's entries packed into one buffer, so a listing costs one call and one copy:
 * per entry u32 ino_lo, u32 ino_hi, u16 name length, u8 d_type, the name bytes (no NUL).
 * "." and ".." are left out. Returns 0 or an errno.
 */
static int pack_directory(int dirfd, const char *path, void **out, size_t *out_len) {
  /* O_NOATIME where allowed: listing a layer must not change it, not even its atime. */
  int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno;
  DIR *dir = fdopendir(fd);
  if (dir == NULL) {
    int err = errno;
    close(fd);
    return err;
  }
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  if (buf == NULL) {
    closedir(dir);
    return ENOMEM;
  }
  int err = 0;
  for (;;) {
    errno = 0;
    struct dirent *d = readdir(dir);
    if (d == NULL) {
      err = errno;
      break;
    }
    if (d->d_name[0] == '.' && (d->d_name[1] == '\0' || (d->d_name[1] == '.' && d->d_name[2] == '\0'))) continue;
    size_t name_len = strlen(d->d_name);
    size_t need = 11 + name_len;
    if (len + need > cap) {
      while (len + need > cap) cap *= 2;
      char *grown = realloc(buf, cap);
      if (grown == NULL) {
        err = ENOMEM;
        break;
      }
      buf = grown;
    }
    uint64_t ino = d->d_ino;
    uint32_t lo = (uint32_t)ino, hi = (uint32_t)(ino >> 32);
    uint16_t nl = (uint16_t)name_len;
    memcpy(buf + len, &lo, 4);
    memcpy(buf + len + 4, &hi, 4);
    memcpy(buf + len + 8, &nl, 2);
    buf[len + 10] = (char)d->d_type;
    memcpy(buf + len + 11, d->d_name, name_len);
    len += need;
  }
  closedir(dir);
  if (err != 0) {
    free(buf);
    return err;
  }
  *out = buf;
  *out_len = len;
  return 0;
}

/* ---------------------------------------------------------------------------------------
 * *at() calls, statx, times, ownership
 * ------------------------------------------------------------------------------------- */

static void run_openat(call_t *c) { RUN_SYSCALL(c, openat(c->fd, c->path, c->flags, (mode_t)c->mode)); }


static void run_statx(call_t *c) { RUN_SYSCALL(c, statx(c->fd, c->path, c->flags, c->mask, &c->stx)); }

static napi_value js_statx(napi_env env, napi_callback_info info) {
  ASYNC_CALL("statx", run_statx, result_statx, "ipiu", &c->fd, &c->path, &c->flags, &c->mask);
  return call_start(env, c);
}

static napi_value js_fstatx(napi_env env, napi_callback_info info) {
  ASYNC_CALL("statx", run_statx, result_statx, "iu", &c->fd, &c->mask);
  c->path = strdup("");
  if (c->path == NULL) {
    call_free(c);
    return throw_errno(env, ENOMEM, "malloc");
  }
  c->flags = AT_EMPTY_PATH;
  return call_start(env, c);
}

static void run_mknodat(call_t *c) {
  RUN_SYSCALL(c, mknodat(c->fd, c->path, (mode_t)c->mode, makedev(c->major, c->minor)));
}

DUAL_CALL(js_mknodat) {
  ASYNC_CALL("mknodat", run_mknodat, NULL, "ipuuu", &c->fd, &c->path, &c->mode, &c->major, &c->minor);
  FINISH(c);
}

static void run_renameat2(call_t *c) {
  RUN_SYSCALL(c, renameat2(c->fd, c->path, c->fd2, c->path2, (unsigned int)c->flags));
}

DUAL_CALL(js_renameat2) {
  ASYNC_CALL("renameat2", run_renameat2, NULL, "ipipi", &c->fd, &c->path, &c->fd2, &c->path2, &c->flags);
  FINISH(c);
}

static void set_times(call_t *c, int64_t atime_sec, int64_t atime_nsec, int64_t mtime_sec, int64_t mtime_nsec) {
  c->times[0].tv_sec = (time_t)atime_sec;
  c->times[0].tv_nsec = (long)atime_nsec;
  c->times[1].tv_sec = (time_t)mtime_sec;
  c->times[1].tv_nsec = (long)mtime_nsec;
}

static void run_utimensat(call_t *c) { RUN_SYSCALL(c, utimensat(c->fd, c->path, c->times, c->flags)); }

DUAL_CALL(js_utimensat) {
  int64_t as, an, ms, mn;
  ASYNC_CALL("utimensat", run_utimensat, NULL, "ipnnnni", &c->fd, &c->path, &as, &an, &ms, &mn, &c->flags);
  set_times(c, as, an, ms, mn);
  FINISH(c);
}

static void run_futimens(call_t *c) { RUN_SYSCALL(c, futimens(c->fd, c->times)); }

static napi_value js_futimens(napi_env env, napi_callback_info info) {
  int64_t as, an, ms, mn;
  ASYNC_CALL("futimens", run_futimens, NULL, "innnn", &c->fd, &as, &an, &ms, &mn);
  set_times(c, as, an, ms, mn);
  return call_start(env, c);
}

/* uid/gid -1 (or 4294967295) means "leave unchanged", as for chown(2). */
static void run_fchownat(call_t *c) {
  RUN_SYSCALL(c, fchownat(c->fd, c->path, (uid_t)c->uid, (gid_t)c->gid, c->flags));
}

DUAL_CALL(js_fchownat) {
  ASYNC_CALL("fchownat", run_fchownat, NULL, "ipnni", &c->fd, &c->path, &c->uid, &c->gid, &c->flags);
  FINISH(c);
}

static void run_fchmodat(call_t *c) { RUN_SYSCALL(c, fchmodat(c->fd, c->path, (mode_t)c->mode, c->flags)); }

DUAL_CALL(js_fchmodat) {
  ASYNC_CALL("fchmodat", run_fchmodat, NULL, "ipui", &c->fd, &c->path, &c->mode, &c->flags);
  FINISH(c);
}

/* ---------------------------------------------------------------------------------------
 * Extended attributes
 * ------------------------------------------------------------------------------------- */

typedef ssize_t (*xattr_read_fn)(const call_t *c, void *buf, size_t size);

/* Probes the size, then reads; the value may grow in between (ERANGE), so probe again. */
static void read_xattr_buffer(call_t *c, xattr_read_fn read_fn) {
  for (;;) {
    ssize_t size;
    do size = read_fn(c, NULL, 0);
    while (size < 0 && errno == EINTR);
    if (size < 0) {
      c->err = errno;
      return;
    }
    if (size == 0) {
      c->value_len = 0;
      return;
    }
    void *buf = realloc(c->value, (size_t)size);
    if (buf == NULL) {
      c->err = ENOMEM;
      return;
    }
    c->value = buf;
    ssize_t n;
    do n = read_fn(c, buf, (size_t)size);
    while (n < 0 && errno == EINTR);
    if (n >= 0) {
      c->value_len = (size_t)n;
      return;
    }
    if (errno != ERANGE) {
      c->err = errno;
      return;
    }
  }
}

/*
 * Path xattr calls relative to a directory fd: Linux 6.13's *xattrat syscalls, or on older
 * kernels the same call through /proc/self/fd/<dirfd>/<path>. AT_FDCWD means plain paths.
 */
#ifndef SYS_setxattrat
#define SYS_setxattrat 463
#define SYS_getxattrat 464
#define SYS_listxattrat 465
#define SYS_removexattrat 466
#endif

struct ovshift_xattr_args {
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};

/* Fills `out` with /proc/self/fd/<dirfd>/<path>; false (errno ENAMETOOLONG) if it does not fit. */
static bool proc_fd_path(char *out, size_t len, int dirfd, const char *path) {
  int n = snprintf(out, len, "/proc/self/fd/%d/%s", dirfd, path);
  if (n < 0 || (size_t)n >= len) {
    errno = ENAMETOOLONG;
    return false;
  }
  return true;
}

static ssize_t xattr_get(int dirfd, const char *path, bool follow, const char *name, void *buf, size_t size) {
  if (dirfd != AT_FDCWD && path[0] == '\0') return fgetxattr(dirfd, name, buf, size); /* the descriptor's own */
  if (dirfd != AT_FDCWD) {
    struct ovshift_xattr_args a = { (uint64_t)(uintptr_t)buf, (uint32_t)size, 0 };
    ssize_t r = syscall(SYS_getxattrat, dirfd, path, follow ? 0 : AT_SYMLINK_NOFOLLOW, name, &a, sizeof a);
    if (r >= 0 || errno != ENOSYS) return r;
    char p[PATH_MAX];
    if (!proc_fd_path(p, sizeof p, dirfd, path)) return -1;
    return follow ? getxattr(p, name, buf, size) : lgetxattr(p, name, buf, size);
  }
  return follow ? getxattr(path, name, buf, size) : lgetxattr(path, name, buf, size);
}

static ssize_t xattr_list(int dirfd, const char *path, bool follow, void *buf, size_t size) {
  if (dirfd != AT_FDCWD) {
    ssize_t r = syscall(SYS_listxattrat, dirfd, path, follow ? 0 : AT_SYMLINK_NOFOLLOW, buf, size);
    if (r >= 0 || errno != ENOSYS) return r;
    char p[PATH_MAX];
    if (!proc_fd_path(p, sizeof p, dirfd, path)) return -1;
    return follow ? listxattr(p, buf, size) : llistxattr(p, buf, size);
  }
  return follow ? listxattr(path, buf, size) : llistxattr(path, buf, size);
}

static int xattr_set(int dirfd, const char *path, bool follow, const char *name, const void *value, size_t size, int flags) {
  if (dirfd != AT_FDCWD) {
    struct ovshift_xattr_args a = { (uint64_t)(uintptr_t)value, (uint32_t)size, (uint32_t)flags };
    long r = syscall(SYS_setxattrat, dirfd, path, follow ? 0 : AT_SYMLINK_NOFOLLOW, name, &a, sizeof a);
    if (r >= 0 || errno != ENOSYS) return (int)r;
    char p[PATH_MAX];
    if (!proc_fd_path(p, sizeof p, dirfd, path)) return -1;
    return follow ? setxattr(p, name, value, size, flags) : lsetxattr(p, name, value, size, flags);
  }
  return follow ? setxattr(path, name, value, size, flags) : lsetxattr(path, name, value, size, flags);
}

static int xattr_remove(int dirfd, const char *path, bool follow, const char *name) {
  if (dirfd != AT_FDCWD) {
    long r = syscall(SYS_removexattrat, dirfd, path, follow ? 0 : AT_SYMLINK_NOFOLLOW, name);
    if (r >= 0 || errno != ENOSYS) return (int)r;
    char p[PATH_MAX];
    if (!proc_fd_path(p, sizeof p, dirfd, path)) return -1;
    return follow ? removexattr(p, name) : lremovexattr(p, name);
  }
  return follow ? removexattr(path, name) : lremovexattr(path, name);
}

static ssize_t read_path_value(const call_t *c, void *buf, size_t size) {
  return xattr_get(c->fd, c->path, c->follow, c->name, buf, size);
}
static ssize_t read_path_list(const call_t *c, void *buf, size_t size) {
  return xattr_list(c->fd, c->path, c->follow, buf, size);
}

static void run_getxattr(call_t *c) { read_xattr_buffer(c, read_path_value); }
static void run_listxattr(call_t *c) { read_xattr_buffer(c, read_path_list); }

static void run_setxattr(call_t *c) {
  RUN_SYSCALL(c, xattr_set(c->fd, c->path, c->follow, c->name, c->value, c->value_len, c->flags));
}
static void run_removexattr(call_t *c) {
  RUN_SYSCALL(c, xattr_remove(c->fd, c->path, c->follow, c->name));
}

/* ---------------------------------------------------------------------------------------
 * Locks, space, offsets, copies
 * ------------------------------------------------------------------------------------- */

static void run_fcntl_lock(call_t *c) { RUN_SYSCALL(c, fcntl(c->fd, c->cmd, &c->lock)); }

DUAL_CALL(js_fcntl_lock) {
  int32_t type;
  int64_t start, len;
  ASYNC_CALL("fcntl", run_fcntl_lock, result_null, "iiiBB", &c->fd, &c->cmd, &type, &start, &len);
  c->lock.l_type = (short)type;
  c->lock.l_whence = SEEK_SET;
  c->lock.l_start = (off_t)start;
  c->lock.l_len = (off_t)len;
  c->lock.l_pid = 0; /* required by the OFD commands, ignored by the others */
  if (c->cmd == F_GETLK || c->cmd == F_OFD_GETLK) c->result = result_lock;
  FINISH(c);
}

static void run_flock(call_t *c) { RUN_SYSCALL(c, flock(c->fd, c->flags)); }

DUAL_CALL(js_flock) {
  ASYNC_CALL("flock", run_flock, NULL, "ii", &c->fd, &c->flags);
  FINISH(c);
}

static void run_fallocate(call_t *c) {
  RUN_SYSCALL(c, fallocate(c->fd, c->flags, (off_t)c->offset, (off_t)c->length));
}

static napi_value js_fallocate(napi_env env, napi_callback_info info) {
  ASYNC_CALL("fallocate", run_fallocate, NULL, "iiBB", &c->fd, &c->flags, &c->offset, &c->length);
  return call_start(env, c);
}

static void run_lseek(call_t *c) { RUN_SYSCALL(c, lseek(c->fd, (off_t)c->offset, c->flags)); }

static napi_value js_lseek(napi_env env, napi_callback_info info) {
  ASYNC_CALL("lseek", run_lseek, result_bigint, "iBi", &c->fd, &c->offset, &c->flags);
  return call_start(env, c);
}

static void run_ftruncate(call_t *c) { RUN_SYSCALL(c, ftruncate(c->fd, (off_t)c->length)); }

static napi_value js_ftruncate(napi_env env, napi_callback_info info) {
  ASYNC_CALL("ftruncate", run_ftruncate, NULL, "iB", &c->fd, &c->length);
  return call_start(env, c);
}

static void run_copy_file_range(call_t *c) {
  loff_t off_in = c->offset, off_out = c->offset2;
  RUN_SYSCALL(c, copy_file_range(c->fd, &off_in, c->fd2, &off_out, (size_t)c->length, (unsigned int)c->flags));
}

static napi_value js_copy_file_range(napi_env env, napi_callback_info info) {
  ASYNC_CALL("copy_file_range", run_copy_file_range, result_number, "iBiBni", &c->fd, &c->offset, &c->fd2,
      &c->offset2, &c->length, &c->flags);
  return call_start(env, c);
}

/* sendfile(2) writes at the output's file offset: it is set first (a file only this call uses). */
static void run_sendfile(call_t *c) {
  off_t off_in = (off_t)c->offset;
  if (lseek(c->fd2, (off_t)c->offset2, SEEK_SET) < 0) {
    c->err = errno;
    return;
  }
  RUN_SYSCALL(c, sendfile(c->fd2, c->fd, &off_in, (size_t)c->length));
}

static napi_value js_sendfile(napi_env env, napi_callback_info info) {
  ASYNC_CALL("sendfile", run_sendfile, result_number, "iBiBn", &c->fd, &c->offset, &c->fd2, &c->offset2, &c->length);
  return call_start(env, c);
}

static void run_ficlone(call_t *c) { RUN_SYSCALL(c, ioctl(c->fd, FICLONE, c->fd2)); }

static napi_value js_ficlone(napi_env env, napi_callback_info info) {
  ASYNC_CALL("ioctl", run_ficlone, NULL, "ii", &c->fd, &c->fd2);
  return call_start(env, c);
}

/* fileattrSync(fd, which, buf) -> 0 | -errno: the inode flag ioctls on `buf`, by number:
 * 0 FS_IOC_GETFLAGS, 1 FS_IOC_SETFLAGS (an int), 2 FS_IOC_FSGETXATTR, 3 FS_IOC_FSSETXATTR (struct
 * fsxattr). Only these: no other ioctl can be made through it. */
static napi_value js_fileattr_sync(napi_env env, napi_callback_info info) {
  int32_t fd;
  uint32_t which;
  napi_value buf_v;
  void *data;
  size_t size;
  if (!parse_args(env, info, "iuo", &fd, &which, &buf_v)) return NULL;
  if (napi_get_buffer_info(env, buf_v, &data, &size) != napi_ok) {
    throw_arg_type(env, 2, "a Buffer");
    return NULL;
  }
  static const unsigned long cmds[] = {OVSHIFT_FS_IOC_GETFLAGS, OVSHIFT_FS_IOC_SETFLAGS, OVSHIFT_FS_IOC_FSGETXATTR,
      OVSHIFT_FS_IOC_FSSETXATTR};
  size_t need = which < 2 ? sizeof(int) : sizeof(struct ovshift_fsxattr);
  if (which > 3 || size < need) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "fileattrSync: which is 0-3, with a Buffer of an int or a struct fsxattr");
    return NULL;
  }
  int rc = ioctl(fd, cmds[which], data);
  return js_i64(env, rc < 0 ? -errno : 0);
}

/* mallocTrim() -> 1 if memory went back to the system: malloc_trim(0), after a large free. */
static napi_value js_malloc_trim(napi_env env, napi_callback_info info) {
  return js_i64(env, malloc_trim(0));
}

/* preadv2Sync/pwritev2Sync(fd, buf, bufOffset, length, position, flags) -> bytes | -errno, on
 * the calling thread: with RWF_NOWAIT they answer EAGAIN instead of waiting for the disk. */
static bool io_span(napi_env env, napi_callback_info info, int32_t *fd, struct iovec *iov, int64_t *pos, int32_t *flags) {
  napi_value buf_v;
  uint32_t off, len;
  void *data;
  size_t size;
  if (!parse_args(env, info, "iouuni", fd, &buf_v, &off, &len, pos, flags)) return false;
  if (napi_get_buffer_info(env, buf_v, &data, &size) != napi_ok) return throw_arg_type(env, 1, "a Buffer");
  if ((size_t)off + len > size) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "bufOffset + length is past the end of the Buffer");
    return false;
  }
  iov->iov_base = (char *)data + off;
  iov->iov_len = len;
  return true;
}

static napi_value io_span_sync(napi_env env, napi_callback_info info, bool write) {
  int32_t fd, flags;
  int64_t pos;
  struct iovec iov;
  if (!io_span(env, info, &fd, &iov, &pos, &flags)) return NULL;
  ssize_t n;
  do n = write ? pwritev2(fd, &iov, 1, pos, flags) : preadv2(fd, &iov, 1, pos, flags);
  while (n < 0 && errno == EINTR);
  return js_i64(env, n < 0 ? -errno : n);
}

static napi_value js_preadv2_sync(napi_env env, napi_callback_info info) { return io_span_sync(env, info, false); }
static napi_value js_pwritev2_sync(napi_env env, napi_callback_info info) { return io_span_sync(env, info, true); }

/* ---------------------------------------------------------------------------------------
 * FUSE device: open, passthrough backing files, synchronous replies
 * ------------------------------------------------------------------------------------- */

static napi_value js_dev_open(napi_env env, napi_callback_info info) {
  int fd = open("/dev/fuse", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "open");
  return js_i64(env, fd);
}

static napi_value js_backing_open(napi_env env, napi_callback_info info) {
  int32_t fuse_fd, backing_fd;
  if (!parse_args(env, info, "ii", &fuse_fd, &backing_fd)) return NULL;
  struct ovshift_fuse_backing_map map = { .fd = backing_fd, .flags = 0, .padding = 0 };
  int id = ioctl(fuse_fd, OVSHIFT_FUSE_DEV_IOC_BACKING_OPEN, &map);
  return js_i64(env, id < 0 ? -errno : id);
}

static napi_value js_backing_close(napi_env env, napi_callback_info info) {
  int32_t fuse_fd;
  uint32_t backing_id;
  if (!parse_args(env, info, "iu", &fuse_fd, &backing_id)) return NULL;
  int rc = ioctl(fuse_fd, OVSHIFT_FUSE_DEV_IOC_BACKING_CLOSE, &backing_id);
  return js_i64(env, rc < 0 ? -errno : rc);
}

/* Visits each Buffer of a JS array of Buffers; fails (TypeError) on anything else. */
static bool for_each_part(napi_env env, napi_value parts, size_t index,
    bool (*visit)(void *ctx, void *data, size_t len), void *ctx, uint32_t *count_out) {
  bool is_array = false;
  uint32_t count = 0;
  if (napi_is_array(env, parts, &is_array) != napi_ok || !is_array) return throw_arg_type(env, index, "an array of Buffers");
  if (napi_get_array_length(env, parts, &count) != napi_ok) return fail_napi(env);
  for (uint32_t i = 0; i < count; i++) {
    napi_value part;
    bool is_buffer = false;
    void *data;
    size_t len;
    if (napi_get_element(env, parts, i, &part) != napi_ok) return fail_napi(env);
    if (napi_is_buffer(env, part, &is_buffer) != napi_ok || !is_buffer) return throw_arg_type(env, index, "an array of Buffers");
    if (napi_get_buffer_info(env, part, &data, &len) != napi_ok) return fail_napi(env);
    if (visit != NULL && !visit(ctx, data, len)) return false;
  }
  if (count_out != NULL) *count_out = count;
  return true;
}

typedef struct {
  struct iovec *iov;
  size_t used;
  size_t capacity;
} iov_builder_t;

static bool add_iov(void *ctx, void *data, size_t len) {
  iov_builder_t *b = ctx;
  if (b->used == b->capacity) return false; /* the array grew between the passes */
  b->iov[b->used].iov_base = data;
  b->iov[b->used].iov_len = len;
  b->used++;
  return true;
}

/* Synchronous: a reply to /dev/fuse never blocks, and the iovecs may point straight into the
 * Buffers since no JS runs before writev returns. */
static napi_value js_dev_write(napi_env env, napi_callback_info info) {
  int32_t fd;
  napi_value parts;
  uint32_t count;
  if (!parse_args(env, info, "io", &fd, &parts)) return NULL;
  if (!for_each_part(env, parts, 1, NULL, NULL, &count)) return NULL;
  if (count > IOV_MAX) return js_i64(env, -EINVAL);
  struct iovec stack_iov[16];
  iov_builder_t builder = {
    .iov = count <= 16 ? stack_iov : malloc(count * sizeof(struct iovec)), .used = 0, .capacity = count,
  };
  if (builder.iov == NULL) return js_i64(env, -ENOMEM);
  if (!for_each_part(env, parts, 1, add_iov, &builder, NULL)) {
    if (builder.iov != stack_iov) free(builder.iov);
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) throw_arg_type(env, 1, "an array of Buffers that does not change while read");
    return NULL;
  }
  ssize_t n;
  do n = writev(fd, builder.iov, (int)builder.used);
  while (n < 0 && errno == EINTR);
  int err = errno;
  if (builder.iov != stack_iov) free(builder.iov);
  return js_i64(env, n < 0 ? -err : n);
}

/* ---------------------------------------------------------------------------------------
 * devReader: polls the FUSE fd on the main loop, hands requests over in batches.
 *
 * Lifetime: the JS object is held strongly while polling (like a Node handle, it is not
 * collected while active). The struct is freed once the JS object is finalized and the
 * uv_poll handle is closed, whichever comes last.
 * ------------------------------------------------------------------------------------- */

typedef struct reader {
  uv_poll_t poll;
  napi_env env;
  napi_ref self;                  /* the JS object; strong while polling */
  napi_ref on_batch;
  napi_async_context async_context;
  int fd;
  uint32_t max_batch;
  uint32_t spin_us;               /* after a batch, poll this long for the next request */
  const int32_t *unanswered;      /* the caller's count of requests not yet answered, or NULL */
  napi_ref unanswered_ref;        /* keeps that count's Int32Array alive */
  size_t buf_size;
  char *scratch;                  /* one read buffer, reused */
  napi_value *batch;              /* max_batch slots, valid within one wakeup's handle scope */
  bool polling;
  bool handle_open;
  bool wrapped;
} reader_t;

static void reader_free_if_unused(reader_t *r) {
  if (r->handle_open || r->wrapped) return;
  free(r->scratch);
  free(r->batch);
  free(r);
}

static void reader_closed(uv_handle_t *handle) {
  reader_t *r = handle->data;
  r->handle_open = false;
  reader_free_if_unused(r);
}

static void reader_stop(reader_t *r) {
  if (!r->polling) return;
  r->polling = false;
  uv_poll_stop(&r->poll);
  uv_close((uv_handle_t *)&r->poll, reader_closed);
  if (r->on_batch != NULL) napi_delete_reference(r->env, r->on_batch);
  if (r->async_context != NULL) napi_async_destroy(r->env, r->async_context);
  if (r->self != NULL) napi_delete_reference(r->env, r->self);
  if (r->unanswered_ref != NULL) napi_delete_reference(r->env, r->unanswered_ref);
  r->unanswered = NULL;
  r->unanswered_ref = NULL;
  r->on_batch = NULL;
  r->async_context = NULL;
  r->self = NULL;
}

static void reader_finalize(napi_env env, void *data, void *hint) {
  reader_t *r = data;
  r->wrapped = false;
  reader_stop(r);
  reader_free_if_unused(r);
}

static void reader_deliver(reader_t *r, napi_value requests, int err) {
  napi_env env = r->env;
  napi_value callback, self, argv[2], result;
  if (napi_get_reference_value(env, r->on_batch, &callback) != napi_ok ||
      napi_get_reference_value(env, r->self, &self) != napi_ok ||
      napi_create_int32(env, err, &argv[1]) != napi_ok) {
    return;
  }
  argv[0] = requests;
  report_callback_exception(env, napi_make_callback(env, r->async_context, self, callback, 2, argv, &result));
}

static uint64_t monotonic_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Reads one request into the scratch buffer: its length; 0 if the device is empty (EAGAIN);
 * -errno on failure, -ENODEV at end of file (/dev/fuse never says this; another fd whose peer
 * left). EINTR and ENOENT (a request interrupted before it was read) are retried. */
static ssize_t reader_read_one(reader_t *r) {
  for (;;) {
    ssize_t n = read(r->fd, r->scratch, r->buf_size);
    if (n > 0) return n;
    if (n == 0) return -ENODEV;
    if (errno == EINTR || errno == ENOENT) continue;
    return errno == EAGAIN ? 0 : -errno;
  }
}

/* Busy-reads the device for a short while after a request was answered: a process doing one
 * syscall after another sends its next request within microseconds, and catching it here
 * saves the daemon's sleep and wakeup. Reading rather than polling: a request that arrives
 * costs one syscall, not a poll and then a read. As reader_read_one; 0: none came in time. */
static ssize_t reader_spin(reader_t *r) {
  uint64_t until = monotonic_us() + r->spin_us;
  for (;;) {
    ssize_t n = reader_read_one(r);
    if (n != 0 || monotonic_us() >= until) return n;
  }
}

/* Deliveries one wakeup makes at most before going back to the loop, so that its timers and
 * thread-pool completions are not held up by a caller that keeps the daemon busy. */
#define SPIN_DELIVERIES 64

/* Hands over up to `limit` requests (fewer once the device is empty) as one batch, the first
 * being `first` when that is not 0: a request the spin already read into the scratch buffer
 * (> 0) or its failure (< 0). Returns how many, or -1 after a failure was reported (the
 * reader is stopped then). */
static int reader_read_batch(reader_t *r, int status, uint32_t limit, ssize_t first) {
  napi_env env = r->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return -1;
  int failure = 0;
  uint32_t count = 0;
  while (failure == 0 && count < limit) {
    ssize_t n = first != 0 ? first : reader_read_one(r);
    first = 0;
    if (n == 0) break;
    if (n < 0) failure = (int)-n;
    else if (napi_create_buffer_copy(env, (size_t)n, r->scratch, NULL, &r->batch[count]) != napi_ok) failure = ENOMEM;
    else count++;
  }
  /* libuv turns POLLERR into UV_EBADF and stops the handle; a FUSE device says POLLERR once
   * unmounted, and read() above has told the real reason (ENODEV) if there is one. */
  if (failure == 0 && status < 0) failure = -status;

  if (count > 0) {
    napi_value array;
    if (napi_create_array_with_length(env, count, &array) == napi_ok) {
      for (uint32_t i = 0; i < count; i++) napi_set_element(env, array, i, r->batch[i]);
      reader_deliver(r, array, 0);
    }
  }
  if (failure != 0 && r->polling) {
    reader_deliver(r, js_null(env), failure);
    reader_stop(r);
  }
  napi_close_handle_scope(env, scope);
  return failure != 0 ? -1 : (int)count;
}

/* Without spinning: what is readable, in batches of up to max_batch, then back to the loop.
 * With spinning: one request at a time, each followed by a spin for the next; one that arrives
 * in time is read at once, without the loop's epoll and without a read finding the device
 * empty. A request the spin has read is always handed over, also after the last delivery.
 * No spin follows a request left unanswered (the count of unanswered ones grew): its caller
 * sends nothing before the answer, which waits for the loop (a network reply, the thread
 * pool) and would only be held up. */
static void reader_readable(uv_poll_t *handle, int status, int events) {
  reader_t *r = handle->data;
  if (!r->polling) return;
  if (r->spin_us == 0) {
    reader_read_batch(r, status, r->max_batch, 0);
    return;
  }
  ssize_t next = 0;
  for (int delivered = 1;; delivered++) {
    int32_t before = r->unanswered != NULL ? *r->unanswered : 0;
    if (reader_read_batch(r, status, 1, next) <= 0) return;
    status = 0;
    if (!r->polling || delivered >= SPIN_DELIVERIES) return;
    if (r->unanswered != NULL && *r->unanswered > before) return;
    next = reader_spin(r);
    if (next == 0) return;
  }
}

static napi_value reader_stop_method(napi_env env, napi_callback_info info) {
  napi_value self;
  void *data = NULL;
  NAPI_OK(napi_get_cb_info(env, info, NULL, NULL, &self, NULL));
  if (napi_unwrap(env, self, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_THIS", "stop() must be called on a DevReader");
    return NULL;
  }
  reader_stop(data);
  return js_undefined(env);
}

static napi_value reader_set_spin_method(napi_env env, napi_callback_info info) {
  napi_value self, argv[2];
  size_t argc = 2;
  void *data = NULL;
  uint32_t us;
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  if (napi_unwrap(env, self, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_THIS", "setSpin() must be called on a DevReader");
    return NULL;
  }
  reader_t *r = data;
  if (argc < 1 || napi_get_value_uint32(env, argv[0], &us) != napi_ok) {
    throw_arg_type(env, 0, "a number");
    return NULL;
  }
  const int32_t *unanswered = NULL;
  napi_ref unanswered_ref = NULL;
  napi_valuetype type = napi_undefined;
  if (argc >= 2) NAPI_OK(napi_typeof(env, argv[1], &type));
  if (type != napi_undefined) {
    bool is_typed = false;
    napi_typedarray_type kind;
    size_t length = 0;
    void *cells = NULL;
    NAPI_OK(napi_is_typedarray(env, argv[1], &is_typed));
    if (is_typed) NAPI_OK(napi_get_typedarray_info(env, argv[1], &kind, &length, &cells, NULL, NULL));
    if (!is_typed || kind != napi_int32_array || length < 1) {
      throw_arg_type(env, 1, "an Int32Array of at least one element");
      return NULL;
    }
    unanswered = cells;
  }
  r->spin_us = us;
  /* Stopped: the references are gone for good, and nothing reads the count any more. */
  if (!r->polling) return js_undefined(env);
  if (unanswered != NULL) NAPI_OK(napi_create_reference(env, argv[1], 1, &unanswered_ref));
  if (r->unanswered_ref != NULL) napi_delete_reference(env, r->unanswered_ref);
  r->unanswered = unanswered;
  r->unanswered_ref = unanswered_ref;
  return js_undefined(env);
}

static napi_value js_dev_reader(napi_env env, napi_callback_info info) {
  int32_t fd;
  uint32_t buf_size, max_batch;
  napi_value on_batch;
  if (!parse_args(env, info, "iuuo", &fd, &buf_size, &max_batch, &on_batch)) return NULL;
  if (!is_function(env, on_batch)) {
    throw_arg_type(env, 3, "a function");
    return NULL;
  }
  if (buf_size == 0 || max_batch == 0) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "bufSize and maxBatch must be positive");
    return NULL;
  }
  uv_loop_t *loop;
  NAPI_OK(napi_get_uv_event_loop(env, &loop));

  reader_t *r = calloc(1, sizeof *r);
  if (r != NULL) {
    r->scratch = malloc(buf_size);
    r->batch = malloc(max_batch * sizeof(napi_value));
  }
  if (r == NULL || r->scratch == NULL || r->batch == NULL) {
    if (r != NULL) reader_free_if_unused(r);
    return throw_errno(env, ENOMEM, "malloc");
  }
  r->env = env;
  r->fd = fd;
  r->buf_size = buf_size;
  r->max_batch = max_batch;
  int rc = uv_poll_init(loop, &r->poll, fd);
  if (rc < 0) {
    reader_free_if_unused(r);
    return throw_errno(env, -rc, "uv_poll_init");
  }
  r->poll.data = r;
  r->handle_open = true;

  /* From here on the close callback and the finalizer own r; reader_stop unwinds. */
  r->polling = true;
  napi_value obj, stop, set_spin, name;
  if (napi_create_object(env, &obj) != napi_ok) goto napi_failed;
  if (napi_wrap(env, obj, r, reader_finalize, NULL, NULL) != napi_ok) goto napi_failed;
  r->wrapped = true;
  if (napi_create_function(env, "stop", NAPI_AUTO_LENGTH, reader_stop_method, NULL, &stop) != napi_ok ||
      napi_set_named_property(env, obj, "stop", stop) != napi_ok ||
      napi_create_function(env, "setSpin", NAPI_AUTO_LENGTH, reader_set_spin_method, NULL, &set_spin) != napi_ok ||
      napi_set_named_property(env, obj, "setSpin", set_spin) != napi_ok ||
      napi_create_reference(env, on_batch, 1, &r->on_batch) != napi_ok ||
      napi_create_reference(env, obj, 1, &r->self) != napi_ok ||
      napi_create_string_utf8(env, "ovshift:devReader", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, obj, name, &r->async_context) != napi_ok) {
    goto napi_failed;
  }
  rc = uv_poll_start(&r->poll, UV_READABLE, reader_readable);
  if (rc < 0) {
    throw_errno(env, -rc, "uv_poll_start");
    reader_stop(r);
    return NULL;
  }
  return obj;

napi_failed:
  throw_napi_failure(env); /* before reader_stop, whose napi calls reset the error info */
  reader_stop(r);
  return NULL;
}

/* ---------------------------------------------------------------------------------------
 * notifyWrite: FUSE notifications written by one dedicated thread per addon instance.
 *
 * Not the libuv threadpool: a notify_inval_entry write can block until the kernel gets the
 * directory lock, which a request we have not answered yet may hold; the answer comes from
 * the main loop, whose own fs work may be queued behind blocked notify writes in a full pool.
 * A thread of our own can block without starving anyone.
 *
 * Ownership: the main side (until its uv_async handle is closed) and the thread each own the
 * notifier; the last one to let go frees it. `quit` (set under the lock when the environment
 * goes away) stops the thread from signalling a handle that is being closed.
 * ------------------------------------------------------------------------------------- */

typedef struct notify_item {
  struct notify_item *next;
  int fd;
  void *bytes;
  size_t len;
  napi_ref done;
  ssize_t result;
} notify_item_t;

typedef struct {
  notify_item_t *head, *tail;
} notify_queue_t;

typedef struct notifier {
  pthread_mutex_t lock;
  pthread_cond_t wake;
  notify_queue_t todo;            /* submitted, to be written (FIFO) */
  notify_queue_t done;            /* written, callback pending (FIFO) */
  bool quit;
  int owners;
  uv_async_t async;               /* thread -> main loop: items in `done` */
  napi_env env;
  napi_async_context async_context;
  size_t pending;                 /* main thread only: submitted, callback not yet called */
} notifier_t;

typedef struct addon {
  notifier_t *notifier;
} addon_t;

static void queue_push(notify_queue_t *q, notify_item_t *item) {
  item->next = NULL;
  if (q->tail != NULL) q->tail->next = item;
  else q->head = item;
  q->tail = item;
}

static notify_item_t *queue_take_all(notify_queue_t *q) {
  notify_item_t *head = q->head;
  q->head = q->tail = NULL;
  return head;
}

static void free_items(notify_item_t *item) {
  while (item != NULL) {
    notify_item_t *next = item->next;
    free(item->bytes);
    free(item);
    item = next;
  }
}

static void notifier_release(notifier_t *n) {
  pthread_mutex_lock(&n->lock);
  bool last = --n->owners == 0;
  pthread_mutex_unlock(&n->lock);
  if (!last) return;
  free_items(n->todo.head);
  free_items(n->done.head);
  pthread_cond_destroy(&n->wake);
  pthread_mutex_destroy(&n->lock);
  free(n);
}

static void *notifier_thread(void *arg) {
  notifier_t *n = arg;
  pthread_mutex_lock(&n->lock);
  for (;;) {
    while (n->todo.head == NULL && !n->quit) pthread_cond_wait(&n->wake, &n->lock);
    if (n->quit) break;
    notify_item_t *item = n->todo.head;
    n->todo.head = item->next;
    if (n->todo.head == NULL) n->todo.tail = NULL;
    pthread_mutex_unlock(&n->lock);

    ssize_t written;
    do written = write(item->fd, item->bytes, item->len);
    while (written < 0 && errno == EINTR);
    item->result = written < 0 ? -errno : written;
    free(item->bytes);
    item->bytes = NULL;

    pthread_mutex_lock(&n->lock);
    queue_push(&n->done, item);
    if (!n->quit) uv_async_send(&n->async);
  }
  pthread_mutex_unlock(&n->lock);
  notifier_release(n);
  return NULL;
}

static void notifier_deliver(uv_async_t *handle) {
  notifier_t *n = handle->data;
  napi_env env = n->env;
  pthread_mutex_lock(&n->lock);
  notify_item_t *item = queue_take_all(&n->done);
  pthread_mutex_unlock(&n->lock);

  while (item != NULL) {
    notify_item_t *next = item->next;
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) == napi_ok) {
      napi_value callback, recv, argv[1], result;
      if (napi_get_reference_value(env, item->done, &callback) == napi_ok &&
          napi_get_global(env, &recv) == napi_ok &&
          napi_create_int64(env, item->result, &argv[0]) == napi_ok) {
        report_callback_exception(env,
            napi_make_callback(env, n->async_context, recv, callback, 1, argv, &result));
      }
      napi_close_handle_scope(env, scope);
    }
    napi_delete_reference(env, item->done);
    free(item);
    if (--n->pending == 0) uv_unref((uv_handle_t *)&n->async);
    item = next;
  }
}

static void notifier_closed(uv_handle_t *handle) { notifier_release(handle->data); }

/* Environment teardown: undelivered callbacks are dropped (their references die with env). */
static void notifier_shutdown(void *arg) {
  notifier_t *n = arg;
  pthread_mutex_lock(&n->lock);
  n->quit = true;
  pthread_cond_signal(&n->wake);
  pthread_mutex_unlock(&n->lock);
  napi_async_destroy(n->env, n->async_context);
  uv_close((uv_handle_t *)&n->async, notifier_closed);
}

static notifier_t *notifier_start(napi_env env) {
  uv_loop_t *loop;
  napi_value name;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok ||
      napi_create_string_utf8(env, "ovshift:notifyWrite", NAPI_AUTO_LENGTH, &name) != napi_ok) {
    throw_napi_failure(env);
    return NULL;
  }
  notifier_t *n = calloc(1, sizeof *n);
  if (n == NULL) {
    throw_errno(env, ENOMEM, "malloc");
    return NULL;
  }
  napi_value resource;
  if (napi_create_object(env, &resource) != napi_ok ||
      napi_async_init(env, resource, name, &n->async_context) != napi_ok) {
    free(n);
    throw_napi_failure(env);
    return NULL;
  }
  int rc = uv_async_init(loop, &n->async, notifier_deliver);
  if (rc < 0) {
    napi_async_destroy(env, n->async_context);
    free(n);
    throw_errno(env, -rc, "uv_async_init");
    return NULL;
  }
  n->async.data = n;
  uv_unref((uv_handle_t *)&n->async);
  n->env = env;
  pthread_mutex_init(&n->lock, NULL);
  pthread_cond_init(&n->wake, NULL);
  n->owners = 2;

  /* Signals belong to the main thread (libuv's handlers); the notifier takes none. */
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t thread;
  rc = pthread_create(&thread, &attr, notifier_thread, n);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &previous, NULL);
  if (rc != 0) {
    n->owners = 1; /* no thread: only the handle's close callback remains */
    napi_async_destroy(env, n->async_context);
    uv_close((uv_handle_t *)&n->async, notifier_closed);
    throw_errno(env, rc, "pthread_create");
    return NULL;
  }
  napi_add_env_cleanup_hook(env, notifier_shutdown, n);
  return n;
}

typedef struct {
  char *dst;
  size_t total;
  size_t capacity;
} concat_t;

static bool count_part(void *ctx, void *data, size_t len) {
  ((concat_t *)ctx)->total += len;
  return true;
}

static bool copy_part(void *ctx, void *data, size_t len) {
  concat_t *c = ctx;
  if (len > c->capacity - c->total) return false; /* the array changed between the passes */
  memcpy(c->dst + c->total, data, len);
  c->total += len;
  return true;
}

static napi_value js_notify_write(napi_env env, napi_callback_info info) {
  int32_t fd;
  napi_value parts, done;
  if (!parse_args(env, info, "ioo", &fd, &parts, &done)) return NULL;
  if (!is_function(env, done)) {
    throw_arg_type(env, 2, "a function");
    return NULL;
  }

  /* The bytes are copied: the thread writes them after the Buffers may be gone. */
  concat_t size = { NULL, 0, 0 };
  if (!for_each_part(env, parts, 1, count_part, &size, NULL)) return NULL;
  notify_item_t *item = calloc(1, sizeof *item);
  concat_t copy = { malloc(size.total > 0 ? size.total : 1), 0, size.total };
  if (item == NULL || copy.dst == NULL) {
    free(item);
    free(copy.dst);
    return throw_errno(env, ENOMEM, "malloc");
  }
  if (!for_each_part(env, parts, 1, copy_part, &copy, NULL) || copy.total != size.total) {
    free(item);
    free(copy.dst);
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) throw_arg_type(env, 1, "an array of Buffers that does not change while read");
    return NULL;
  }
  item->fd = fd;
  item->bytes = copy.dst;
  item->len = copy.total;
  if (napi_create_reference(env, done, 1, &item->done) != napi_ok) {
    free_items(item);
    return throw_napi_failure(env);
  }

  addon_t *addon = NULL;
  if (napi_get_instance_data(env, (void **)&addon) != napi_ok || addon == NULL) {
    napi_delete_reference(env, item->done);
    free_items(item);
    return throw_napi_failure(env);
  }
  if (addon->notifier == NULL) addon->notifier = notifier_start(env);
  notifier_t *n = addon->notifier;
  if (n == NULL) {
    napi_delete_reference(env, item->done);
    free_items(item);
    return NULL;
  }
  /* Referenced while callbacks are owed, so they are delivered before the process exits. */
  if (n->pending++ == 0) uv_ref((uv_handle_t *)&n->async);
  pthread_mutex_lock(&n->lock);
  queue_push(&n->todo, item);
  pthread_cond_signal(&n->wake);
  pthread_mutex_unlock(&n->lock);
  return js_undefined(env);
}

/* ---------------------------------------------------------------------------------------
 * Constants and module setup
 * ------------------------------------------------------------------------------------- */

/* ---------------------------------------------------------------------------------------
 * Calls relative to a directory fd, so a layer is reached through its root's descriptor
 * and paths near PATH_MAX inside it still fit.
 * ------------------------------------------------------------------------------------- */

DUAL_CALL(js_getxattrat) {
  ASYNC_CALL("getxattrat", run_getxattr, result_value, "ippb", &c->fd, &c->path, &c->name, &c->follow);
  FINISH(c);
}

DUAL_CALL(js_setxattrat) {
  ASYNC_CALL("setxattrat", run_setxattr, NULL, "ippvib", &c->fd, &c->path, &c->name, &c->value, &c->value_len,
      &c->flags, &c->follow);
  FINISH(c);
}

DUAL_CALL(js_listxattrat) {
  ASYNC_CALL("listxattrat", run_listxattr, result_value, "ipb", &c->fd, &c->path, &c->follow);
  FINISH(c);
}

DUAL_CALL(js_removexattrat) {
  ASYNC_CALL("removexattrat", run_removexattr, NULL, "ippb", &c->fd, &c->path, &c->name, &c->follow);
  FINISH(c);
}

static void run_mkdirat(call_t *c) { RUN_SYSCALL(c, mkdirat(c->fd, c->path, (mode_t)c->mode)); }

DUAL_CALL(js_mkdirat) {
  ASYNC_CALL("mkdirat", run_mkdirat, NULL, "ipu", &c->fd, &c->path, &c->mode);
  FINISH(c);
}

static void run_symlinkat(call_t *c) { RUN_SYSCALL(c, symlinkat(c->path2, c->fd, c->path)); }

/* symlinkat(target, dirfd, path) */
DUAL_CALL(js_symlinkat) {
  ASYNC_CALL("symlinkat", run_symlinkat, NULL, "pip", &c->path2, &c->fd, &c->path);
  FINISH(c);
}

static void run_linkat(call_t *c) { RUN_SYSCALL(c, linkat(c->fd, c->path, c->fd2, c->path2, c->flags)); }

DUAL_CALL(js_linkat) {
  ASYNC_CALL("linkat", run_linkat, NULL, "ipipi", &c->fd, &c->path, &c->fd2, &c->path2, &c->flags);
  FINISH(c);
}

static void run_unlinkat(call_t *c) { RUN_SYSCALL(c, unlinkat(c->fd, c->path, c->flags)); }

DUAL_CALL(js_unlinkat) {
  ASYNC_CALL("unlinkat", run_unlinkat, NULL, "ipi", &c->fd, &c->path, &c->flags);
  FINISH(c);
}

static void run_readlinkat(call_t *c) {
  char *buf = malloc(PATH_MAX);
  if (buf == NULL) {
    c->err = ENOMEM;
    return;
  }
  ssize_t n;
  do n = readlinkat(c->fd, c->path, buf, PATH_MAX);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    c->err = errno;
    free(buf);
    return;
  }
  c->value = buf;
  c->value_len = (size_t)n;
}

DUAL_CALL(js_readlinkat) {
  ASYNC_CALL("readlinkat", run_readlinkat, result_value, "ip", &c->fd, &c->path);
  FINISH(c);
}

static void run_readdirat(call_t *c) { c->err = pack_directory(c->fd, c->path, &c->value, &c->value_len); }

DUAL_CALL(js_readdirat) {
  ASYNC_CALL("openat", run_readdirat, result_value, "ip", &c->fd, &c->path);
  FINISH(c);
}

DUAL_CALL(js_openat) {
  ASYNC_CALL("openat", run_openat, result_number, "ipiu", &c->fd, &c->path, &c->flags, &c->mode);
  FINISH(c);
}

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

static void run_openat2(call_t *c) {
  struct open_how how = { .flags = (uint64_t)(uint32_t)c->flags, .mode = c->mode, .resolve = c->mask };
  RUN_SYSCALL(c, syscall(SYS_openat2, c->fd, c->path, &how, sizeof how));
}

/* openat2(dirfd, path, flags, mode, resolve): `resolve` is the RESOLVE_* mask. */
DUAL_CALL(js_openat2) {
  ASYNC_CALL("openat2", run_openat2, result_number, "ipiuu", &c->fd, &c->path, &c->flags, &c->mode, &c->mask);
  FINISH(c);
}

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif

/* openTreeSync(path, flags) -> fd | -errno */
static napi_value js_open_tree_sync(napi_env env, napi_callback_info info) {
  char *path = NULL;
  int32_t flags;
  if (!parse_args(env, info, "pi", &path, &flags)) {
    free(path);
    return NULL;
  }
  long fd = syscall(SYS_open_tree, AT_FDCWD, path, (unsigned int)flags);
  int res = fd < 0 ? -errno : (int)fd;
  free(path);
  return js_i64(env, res);
}

#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef MOUNT_ATTR_SIZE_VER0
struct mount_attr {
  uint64_t attr_set;
  uint64_t attr_clr;
  uint64_t propagation;
  uint64_t userns_fd;
};
#define MOUNT_ATTR_SIZE_VER0 32
#endif
#ifndef MOUNT_ATTR__ATIME
#define MOUNT_ATTR__ATIME 0x00000070
#define MOUNT_ATTR_RELATIME 0x00000000
#define MOUNT_ATTR_NOATIME 0x00000010
#define MOUNT_ATTR_STRICTATIME 0x00000020
#endif

/* mountSetattrSync(fd, attrSet, attrClr) -> 0 | -errno: mount_setattr on the mount `fd` is (AT_EMPTY_PATH). */
static napi_value js_mount_setattr_sync(napi_env env, napi_callback_info info) {
  int32_t fd;
  uint32_t set, clr;
  if (!parse_args(env, info, "iuu", &fd, &set, &clr)) return NULL;
  struct mount_attr attr = {.attr_set = set, .attr_clr = clr};
  long res = syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr);
  return js_i64(env, res < 0 ? -errno : 0);
}

/* fanotifyInitSync(flags, eventFlags) -> fd | -errno */
static napi_value js_fanotify_init_sync(napi_env env, napi_callback_info info) {
  uint32_t flags, event_flags;
  if (!parse_args(env, info, "uu", &flags, &event_flags)) return NULL;
  int fd = fanotify_init(flags, event_flags);
  return js_i64(env, fd < 0 ? -errno : fd);
}

/* fanotifyMarkSync(fd, flags, mask, dirfd, path) -> 0 | -errno */
static napi_value js_fanotify_mark_sync(napi_env env, napi_callback_info info) {
  int32_t fd, dirfd;
  uint32_t flags;
  int64_t mask;
  char *path = NULL;
  if (!parse_args(env, info, "iunip", &fd, &flags, &mask, &dirfd, &path)) {
    free(path);
    return NULL;
  }
  int res = fanotify_mark(fd, flags, (uint64_t)mask, dirfd, path);
  if (res < 0) res = -errno;
  free(path);
  return js_i64(env, res);
}

/* openByHandleAtSync(mountFd, handleType, handleBytes, flags) -> fd | -errno */
static napi_value js_open_by_handle_at_sync(napi_env env, napi_callback_info info) {
  int32_t mount_fd, handle_type, flags;
  void *bytes = NULL;
  size_t len = 0;
  if (!parse_args(env, info, "iivi", &mount_fd, &handle_type, &bytes, &len, &flags)) {
    free(bytes);
    return NULL;
  }
  struct file_handle *fh = malloc(sizeof *fh + len);
  int res = -ENOMEM;
  if (fh != NULL) {
    fh->handle_bytes = (unsigned int)len;
    fh->handle_type = handle_type;
    memcpy(fh->f_handle, bytes, len);
    res = open_by_handle_at(mount_fd, fh, flags);
    if (res < 0) res = -errno;
    free(fh);
  }
  free(bytes);
  return js_i64(env, res);
}

/* fsidSync(fd) -> Buffer (the 8 bytes of statfs's f_fsid, as fanotify reports them) | -errno */
static napi_value js_fsid_sync(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!parse_args(env, info, "i", &fd)) return NULL;
  struct statfs st;
  if (fstatfs(fd, &st) < 0) return js_i64(env, -errno);
  napi_value buf;
  if (napi_create_buffer_copy(env, sizeof st.f_fsid, &st.f_fsid, NULL, &buf) != napi_ok) return NULL;
  return buf;
}

static napi_value make_constants(napi_env env) {
  static const struct {
    const char *name;
    int64_t value;
  } table[] = {
#define K(name) { #name, (int64_t)(name) }
    K(AT_FDCWD), K(AT_SYMLINK_NOFOLLOW), K(AT_SYMLINK_FOLLOW), K(AT_EMPTY_PATH), K(AT_REMOVEDIR),
    K(AT_NO_AUTOMOUNT),
    K(AT_STATX_SYNC_AS_STAT), K(AT_STATX_FORCE_SYNC), K(AT_STATX_DONT_SYNC),
    K(STATX_TYPE), K(STATX_MODE), K(STATX_NLINK), K(STATX_UID), K(STATX_GID), K(STATX_ATIME),
    K(STATX_MTIME), K(STATX_CTIME), K(STATX_INO), K(STATX_SIZE), K(STATX_BLOCKS),
    K(STATX_BASIC_STATS), K(STATX_BTIME), K(STATX_ALL),
    K(UTIME_NOW), K(UTIME_OMIT),
    K(RENAME_NOREPLACE), K(RENAME_EXCHANGE), K(RENAME_WHITEOUT),
    K(XATTR_CREATE), K(XATTR_REPLACE),
    K(F_GETLK), K(F_SETLK), K(F_SETLKW), K(F_OFD_GETLK), K(F_OFD_SETLK), K(F_OFD_SETLKW),
    K(F_RDLCK), K(F_WRLCK), K(F_UNLCK),
    K(LOCK_SH), K(LOCK_EX), K(LOCK_UN), K(LOCK_NB),
    K(SEEK_SET), K(SEEK_CUR), K(SEEK_END), K(SEEK_DATA), K(SEEK_HOLE),
    K(RWF_NOWAIT),
    K(FALLOC_FL_KEEP_SIZE), K(FALLOC_FL_PUNCH_HOLE), K(FALLOC_FL_ZERO_RANGE),
    K(FALLOC_FL_COLLAPSE_RANGE), K(FALLOC_FL_INSERT_RANGE), K(FALLOC_FL_UNSHARE_RANGE),
    K(MS_RDONLY), K(MS_NOSUID), K(MS_NODEV), K(MS_NOEXEC), K(MS_SYNCHRONOUS), K(MS_REMOUNT),
    K(MS_MANDLOCK), K(MS_DIRSYNC), K(MS_NOATIME), K(MS_NODIRATIME), K(MS_BIND), K(MS_MOVE),
    K(MS_REC), K(MS_SILENT), K(MS_UNBINDABLE), K(MS_PRIVATE), K(MS_SLAVE), K(MS_SHARED),
    K(MS_RELATIME), K(MS_STRICTATIME), K(MS_LAZYTIME),
    K(MNT_FORCE), K(MNT_DETACH), K(MNT_EXPIRE), K(UMOUNT_NOFOLLOW),
    K(O_RDONLY), K(O_WRONLY), K(O_RDWR), K(O_CREAT), K(O_EXCL), K(O_TRUNC), K(O_APPEND),
    K(O_PATH), K(O_NOFOLLOW), K(O_DIRECTORY), K(O_TMPFILE), K(O_NOATIME), K(O_CLOEXEC),
    K(O_NONBLOCK),
    K(RESOLVE_BENEATH), K(RESOLVE_NO_SYMLINKS), K(RESOLVE_NO_MAGICLINKS), K(RESOLVE_NO_XDEV),
    K(OPEN_TREE_CLONE), K(OPEN_TREE_CLOEXEC), K(MOUNT_ATTR__ATIME), K(MOUNT_ATTR_RELATIME), K(MOUNT_ATTR_NOATIME),
    K(MOUNT_ATTR_STRICTATIME),
    K(FAN_CLASS_NOTIF), K(FAN_CLOEXEC), K(FAN_NONBLOCK), K(FAN_REPORT_FID), K(FAN_REPORT_DFID_NAME),
    K(FAN_MARK_ADD), K(FAN_MARK_REMOVE), K(FAN_MARK_FILESYSTEM),
    K(FAN_CREATE), K(FAN_DELETE), K(FAN_MOVED_FROM), K(FAN_MOVED_TO), K(FAN_ATTRIB), K(FAN_MODIFY),
    K(FAN_DELETE_SELF), K(FAN_MOVE_SELF), K(FAN_ONDIR), K(FAN_Q_OVERFLOW),
    K(FAN_EVENT_INFO_TYPE_FID), K(FAN_EVENT_INFO_TYPE_DFID_NAME), K(FAN_EVENT_INFO_TYPE_DFID),
    K(S_IFMT), K(S_IFREG), K(S_IFDIR), K(S_IFLNK), K(S_IFCHR), K(S_IFBLK), K(S_IFIFO), K(S_IFSOCK),
#undef K
  };
  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok) return NULL;
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    napi_value v;
    if (napi_create_int64(env, table[i].value, &v) != napi_ok ||
        napi_set_named_property(env, obj, table[i].name, v) != napi_ok) {
      return NULL;
    }
  }
  napi_value global, object_ctor, freeze, frozen;
  if (napi_get_global(env, &global) == napi_ok &&
      napi_get_named_property(env, global, "Object", &object_ctor) == napi_ok &&
      napi_get_named_property(env, object_ctor, "freeze", &freeze) == napi_ok) {
    napi_call_function(env, object_ctor, freeze, 1, &obj, &frozen);
  }
  return obj;
}

static void addon_finalize(napi_env env, void *data, void *hint) { free(data); }

/* Node unloads a worker's addons when the worker ends, but the notifier thread and libuv close
 * callbacks of ours may still run after that: keep this library mapped for the process. */
static void pin_library(void) {
  Dl_info self;
  if (dladdr((void *)pin_library, &self) != 0 && self.dli_fname != NULL) {
    dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
  }
}

static napi_value init(napi_env env, napi_value exports) {
  pin_library();
  addon_t *addon = calloc(1, sizeof *addon);
  if (addon == NULL) return throw_errno(env, ENOMEM, "malloc");
  NAPI_OK(napi_set_instance_data(env, addon, addon_finalize, NULL));

#define FN(js_name, c_fn) { js_name, NULL, c_fn, NULL, NULL, NULL, napi_enumerable, NULL }
  const napi_property_descriptor functions[] = {
    FN("devOpen", js_dev_open),
    FN("devReader", js_dev_reader),
    FN("devWrite", js_dev_write),
    FN("notifyWrite", js_notify_write),
    FN("mount", js_mount),
    FN("umount2", js_umount2),
    FN("socketpair", js_socketpair),
    FN("recvFd", js_recv_fd),
    FN("setNonblock", js_set_nonblock),
    FN("openat", js_openat),
    FN("statx", js_statx),
    FN("statxSync", js_statx_sync),
    FN("fstatxSync", js_fstatx_sync),
    FN("setStatusFlagsSync", js_set_status_flags_sync),
    FN("getxattrat", js_getxattrat),
    FN("getxattratSync", js_getxattrat_sync),
    FN("setxattrat", js_setxattrat),
    FN("setxattratSync", js_setxattrat_sync),
    FN("listxattrat", js_listxattrat),
    FN("listxattratSync", js_listxattrat_sync),
    FN("removexattrat", js_removexattrat),
    FN("removexattratSync", js_removexattrat_sync),
    FN("mkdirat", js_mkdirat),
    FN("mkdiratSync", js_mkdirat_sync),
    FN("symlinkat", js_symlinkat),
    FN("symlinkatSync", js_symlinkat_sync),
    FN("linkat", js_linkat),
    FN("linkatSync", js_linkat_sync),
    FN("unlinkat", js_unlinkat),
    FN("unlinkatSync", js_unlinkat_sync),
    FN("readlinkat", js_readlinkat),
    FN("readlinkatSync", js_readlinkat_sync),
    FN("readdirat", js_readdirat),
    FN("readdiratSync", js_readdirat_sync),
    FN("openatSync", js_openat_sync),
    FN("openat2", js_openat2),
    FN("openat2Sync", js_openat2_sync),
    FN("openTreeSync", js_open_tree_sync),
    FN("mountSetattrSync", js_mount_setattr_sync),
    FN("fileattrSync", js_fileattr_sync),
    FN("fanotifyInitSync", js_fanotify_init_sync),
    FN("fanotifyMarkSync", js_fanotify_mark_sync),
    FN("openByHandleAtSync", js_open_by_handle_at_sync),
    FN("fsidSync", js_fsid_sync),
    FN("mknodatSync", js_mknodat_sync),
    FN("renameat2Sync", js_renameat2_sync),
    FN("utimensatSync", js_utimensat_sync),
    FN("fchownatSync", js_fchownat_sync),
    FN("fchmodatSync", js_fchmodat_sync),
    FN("fstatx", js_fstatx),
    FN("mknodat", js_mknodat),
    FN("renameat2", js_renameat2),
    FN("utimensat", js_utimensat),
    FN("futimens", js_futimens),
    FN("fchownat", js_fchownat),
    FN("fchmodat", js_fchmodat),
    FN("fcntlLock", js_fcntl_lock),
    FN("flock", js_flock),
    FN("fcntlLockSync", js_fcntl_lock_sync),
    FN("flockSync", js_flock_sync),
    FN("fallocate", js_fallocate),
    FN("lseek", js_lseek),
    FN("ftruncate", js_ftruncate),
    FN("copyFileRange", js_copy_file_range),
    FN("sendfile", js_sendfile),
    FN("ficlone", js_ficlone),
    FN("mallocTrim", js_malloc_trim),
    FN("preadv2Sync", js_preadv2_sync),
    FN("pwritev2Sync", js_pwritev2_sync),
    FN("backingOpen", js_backing_open),
    FN("backingClose", js_backing_close),
  };
#undef FN
  NAPI_OK(napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions));
  napi_value constants = make_constants(env);
  if (constants == NULL) return throw_napi_failure(env);
  NAPI_OK(napi_set_named_property(env, exports, "constants", constants));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
