/*
 * The `ovshift` command: a small front end that asks the user's long-lived ovshift server to
 * make a mount, starting the server when none runs, and exits with the mount ready (0) or
 * with the server's one-line error (1, or 2 for a misused command line).
 *
 * Why: a container engine runs its mount program once per container and waits for it; a
 * Node process per mount costs 0.1-0.15 s and 40 MiB before it does anything. One server per
 * user (and per user and mount namespace: mounts are made where the server lives) serves
 * every mount; this front end costs a connect and one round trip.
 *
 * What it sends (one request per connection, fields NUL-terminated, then shutdown(SHUT_WR)):
 *   "ovshift-mount-2", the working directory, OVSHIFT_OPTIONS and TMPDIR (each "" when unset),
 *   then every argument.
 * What it reads back (one line): "ok", "exec" (run the Node command line yourself: foreground,
 * help, anything the server does not take), or "error STATUS MESSAGE".
 *
 * Foreground runs (-f, -d), help, version and `ctl` go to the Node command line directly, as
 * do all commands when OVSHIFT_SERVER=off (one daemon per mount, as before).
 *
 * The server's socket lives in the directory the control sockets use: /run/ovshift for root
 * that owns /run, else $XDG_RUNTIME_DIR (or /tmp)/ovshift-UID with UID as the parent user
 * namespace sees it; it must be a directory of ours with no access for others. Its name says
 * which user and mount namespace and which installation it serves (server_file).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef OVSHIFT_NODE
#define OVSHIFT_NODE "/usr/bin/node"
#endif

#define PROTOCOL "ovshift-mount-2"
#define NODE_FLAGS "--max-semi-space-size=4"
#define READY_FD 3

static void die(int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("ovshift: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(status);
}

/* The checkout or installation this binary belongs to: build/Release/ovshift → its root. */
static void package_root(char *out, size_t len) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n < 0) die(1, "cannot find this program (/proc/self/exe): %s", strerror(errno));
  exe[n] = '\0';
  for (int up = 0; up < 3; up++) {
    char *slash = strrchr(exe, '/');
    if (slash == NULL || slash == exe) die(1, "cannot find the ovshift package above %s", exe);
    *slash = '\0';
  }
  if ((size_t)snprintf(out, len, "%s", exe) >= len) die(1, "path too long: %s", exe);
}

static const char *node_binary(void) {
  const char *env = getenv("OVSHIFT_NODE");
  if (env != NULL && *env != '\0') return env;
  return OVSHIFT_NODE;
}

/* Replaces this process with `node SCRIPT ARGS…` (the Node command line, or the server). */
static void exec_node(const char *root, const char *script, int argc, char **argv) {
  char path[PATH_MAX];
  if ((size_t)snprintf(path, sizeof path, "%s/bin/%s", root, script) >= sizeof path) die(1, "path too long: %s", root);
  char **args = calloc((size_t)argc + 4, sizeof *args);
  if (args == NULL) die(1, "out of memory");
  int n = 0;
  args[n++] = (char *)node_binary();
  args[n++] = NODE_FLAGS;
  args[n++] = path;
  for (int i = 0; i < argc; i++) args[n++] = argv[i];
  args[n] = NULL;
  setenv("UV_THREADPOOL_SIZE", getenv("UV_THREADPOOL_SIZE") ? getenv("UV_THREADPOOL_SIZE") : "16", 1);
  execv(args[0], args);
  die(1, "cannot run %s: %s", args[0], strerror(errno));
}

/* Options that take the next argument as their value. */
static bool takes_value(const char *a) {
  return strcmp(a, "-o") == 0 || strcmp(a, "--lower") == 0 || strcmp(a, "--upper") == 0 ||
         strcmp(a, "--work") == 0 || strcmp(a, "--uidmap") == 0 || strcmp(a, "--gidmap") == 0;
}

/* Whether the Node command line should handle this itself (no server involved). */
static bool for_node_directly(int argc, char **argv) {
  const char *server = getenv("OVSHIFT_SERVER");
  if (server != NULL && strcmp(server, "off") == 0) return true;
  if (argc > 1 && strcmp(argv[1], "ctl") == 0) return true;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) break;
    if (takes_value(a)) {
      i++;
      continue;
    }
    if (strcmp(a, "-f") == 0 || strcmp(a, "-d") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 ||
        strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
      return true;
    }
  }
  return false;
}

/* Our uid as the parent user namespace knows it (the roots of two user namespaces differ). */
static unsigned long outer_uid(void) {
  unsigned long uid = geteuid();
  FILE *f = fopen("/proc/self/uid_map", "re");
  if (f == NULL) return uid;
  unsigned long inside, outside, count;
  while (fscanf(f, "%lu %lu %lu", &inside, &outside, &count) == 3) {
    if (uid >= inside && uid - inside < count) {
      uid = outside + (uid - inside);
      break;
    }
  }
  fclose(f);
  return uid;
}

static bool owns_run(void) {
  struct stat st;
  return geteuid() == 0 && stat("/run", &st) == 0 && st.st_uid == 0;
}

/* Makes `dir` 0700 or checks the one there: ours, a real directory, no access for others. */
static bool private_dir(const char *dir) {
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) return false;
  struct stat st;
  if (lstat(dir, &st) != 0) return false;
  if (!S_ISDIR(st.st_mode)) die(1, "control socket directory %s is not a directory; refusing to use it", dir);
  if (st.st_uid != geteuid()) die(1, "control socket directory %s is owned by uid %u, not %u; refusing to use it", dir, st.st_uid, geteuid());
  if (st.st_mode & 077) die(1, "control socket directory %s has mode %04o, not 0700; refusing to use it", dir, st.st_mode & 07777);
  return true;
}

static void server_dir(char *out, size_t len) {
  if (owns_run()) {
    snprintf(out, len, "/run/ovshift");
    if (private_dir(out)) return;
  }
  const char *base = getenv("XDG_RUNTIME_DIR");
  if (base == NULL || *base == '\0') base = "/tmp";
  if ((size_t)snprintf(out, len, "%s/ovshift-%lu", base, outer_uid()) >= len) die(1, "path too long: %s", base);
  if (!private_dir(out)) die(1, "cannot make the control socket directory %s: %s", out, strerror(errno));
}

static unsigned long long namespace_id(const char *kind) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/ns/%s", kind);
  struct stat st;
  return stat(path, &st) == 0 ? (unsigned long long)st.st_ino : 0;
}

/* FNV-1a: a short, stable name for an installation. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

/* Which installation and build this is: a server runs the code it started with, so another
 * checkout, or this one rebuilt, gets a server of its own (the old one ends when idle). */
static uint64_t installation_id(const char *root) {
  char path[PATH_MAX];
  struct stat st = { 0 };
  if ((size_t)snprintf(path, sizeof path, "%s/dist/src/server/server.js", root) < sizeof path) stat(path, &st);
  uint64_t h = fnv1a(0xcbf29ce484222325ULL, root, strlen(root));
  h = fnv1a(h, &st.st_ino, sizeof st.st_ino);
  return fnv1a(h, &st.st_mtim, sizeof st.st_mtim);
}

/* DIR/server-USERNS-MNTNS-BUILD.EXT: one server per user, user namespace, mount namespace and
 * installation. */
static void server_file(char *out, size_t len, const char *dir, const char *root, const char *ext) {
  if ((size_t)snprintf(out, len, "%s/server-%llu-%llu-%016llx.%s", dir, namespace_id("user"), namespace_id("mnt"),
                       (unsigned long long)installation_id(root), ext) >= len) {
    die(1, "path too long: %s", dir);
  }
}

static int connect_to(const char *path) {
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  if (strlen(path) >= sizeof addr.sun_path) die(1, "socket path too long: %s", path);
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die(1, "socket: %s", strerror(errno));
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) return fd;
  int err = errno;
  close(fd);
  errno = err;
  return -1;
}

/* Reads `fd` to its end into a NUL-terminated buffer (at most len-1 bytes kept). */
static void read_all(int fd, char *buf, size_t len) {
  size_t used = 0;
  for (;;) {
    ssize_t n = read(fd, buf + used, len - 1 - used);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    used += (size_t)n;
    if (used == len - 1) break;
  }
  buf[used] = '\0';
}

/* Starts the server and waits for its "ready" (or its error line) on a pipe. */
static void start_server(const char *root, const char *socket_path) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) die(1, "pipe: %s", strerror(errno));
  pid_t pid = fork();
  if (pid < 0) die(1, "fork: %s", strerror(errno));
  if (pid == 0) {
    /* The server must hold none of our caller's descriptors: an engine reading our output
     * until its end would wait for the server's. */
    setsid();
    if (chdir("/") != 0) _exit(1);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0) _exit(1);
    if (dup2(ready[1], READY_FD) < 0) _exit(1);
    for (int fd = READY_FD + 1; fd < 1024; fd++) close(fd);
    setenv("OVSHIFT_READY_FD", "3", 1);
    char *args[] = { (char *)socket_path };
    exec_node(root, "ovshift-server", 1, args);
  }
  close(ready[1]);
  char line[4096];
  read_all(ready[0], line, sizeof line);
  close(ready[0]);
  /* The server lives on (setsid, reparented when we exit); only a failed start is reaped. */
  line[strcspn(line, "\n")] = '\0';
  if (strcmp(line, "ready") == 0) return;
  waitpid(pid, NULL, 0);
  if (strncmp(line, "error ", 6) == 0) die(1, "%s", line + 6);
  die(1, "the ovshift server exited before it was ready");
}

/* Opens and locks `path`; a server that ends unlinks it under the lock, so a lock taken on a
 * file no longer at that path is let go and the new one taken. */
static int lock_file(const char *path) {
  for (;;) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) die(1, "cannot open %s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX) != 0) {
      if (errno != EINTR) die(1, "cannot lock %s: %s", path, strerror(errno));
    }
    struct stat held, now;
    if (fstat(fd, &held) == 0 && stat(path, &now) == 0 && held.st_ino == now.st_ino && held.st_dev == now.st_dev) return fd;
    close(fd);
  }
}

/* A connection to the server, started first when none answers. */
static int server_connection(const char *root) {
  char dir[PATH_MAX], sock[PATH_MAX], lock[PATH_MAX];
  server_dir(dir, sizeof dir);
  server_file(sock, sizeof sock, dir, root, "sock");
  int fd = connect_to(sock);
  if (fd >= 0) return fd;
  if (errno != ENOENT && errno != ECONNREFUSED) die(1, "cannot reach the ovshift server at %s: %s", sock, strerror(errno));
  /* One starter at a time; whoever waited behind it finds the server running. */
  server_file(lock, sizeof lock, dir, root, "lock");
  int lockfd = lock_file(lock);
  fd = connect_to(sock);
  if (fd < 0) {
    start_server(root, sock);
    fd = connect_to(sock);
    if (fd < 0) die(1, "cannot reach the ovshift server at %s: %s", sock, strerror(errno));
  }
  close(lockfd);
  return fd;
}

static void write_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die(1, "cannot talk to the ovshift server: %s", strerror(n < 0 ? errno : EPIPE));
    data += n;
    len -= (size_t)n;
  }
}

static void send_field(int fd, const char *s) { write_all(fd, s, strlen(s) + 1); }

int main(int argc, char **argv) {
  char root[PATH_MAX];
  package_root(root, sizeof root);
  if (for_node_directly(argc, argv)) exec_node(root, "ovshift", argc - 1, argv + 1);

  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd) == NULL) die(1, "cannot read the working directory: %s", strerror(errno));
  int fd = server_connection(root);
  send_field(fd, PROTOCOL);
  send_field(fd, cwd);
  const char *defaults = getenv("OVSHIFT_OPTIONS");
  send_field(fd, defaults ? defaults : "");
  const char *tmp = getenv("TMPDIR");
  send_field(fd, tmp ? tmp : "");
  for (int i = 1; i < argc; i++) send_field(fd, argv[i]);
  shutdown(fd, SHUT_WR);

  char reply[4096];
  read_all(fd, reply, sizeof reply);
  close(fd);
  reply[strcspn(reply, "\n")] = '\0';
  if (strcmp(reply, "ok") == 0) return 0;
  if (strcmp(reply, "exec") == 0) exec_node(root, "ovshift", argc - 1, argv + 1);
  if (strncmp(reply, "error ", 6) == 0) {
    char *end;
    long status = strtol(reply + 6, &end, 10);
    if (end != reply + 6 && *end == ' ') die(status > 0 && status < 256 ? (int)status : 1, "%s", end + 1);
  }
  die(1, "the ovshift server ended without an answer%s%s", reply[0] ? ": " : "", reply);
}
