/*
 * The benchmark workloads, run as a child process so that the process serving a FUSE mount
 * never also drives it. Compiled at run time by bench/lib/workload.ts. Each command times only
 * its own work (CLOCK_MONOTONIC, after setup) and prints one JSON line: {"ns":N,"count":N}
 * (stat-latency adds "median_ns" and "p99_ns").
 *
 *   fstat N FILE              N fstat() calls on one open fd (one GETATTR each, attr timeout 0)
 *   stat N PATH               N stat() calls on a path (LOOKUP + GETATTR each, timeouts 0)
 *   read FILE BLOCK           read FILE to its end, BLOCK bytes per read(); count = bytes
 *   walk DIR                  lstat every entry below DIR; count = entries
 *   readall DIR BLOCK         read every regular file below DIR; count = bytes
 *   write FILE BYTES BLOCK    create FILE and write BYTES to it, BLOCK per write(); count = bytes
 *   create-unlink DIR N       create N empty files in DIR, then unlink them; count = N
 *   append FILE               append one byte to FILE (a copy-up on an overlay); count = 1
 *   make-empty-files DIR D F  make D directories d<i> in DIR holding F empty files f<j> each;
 *                             count = files
 *   stat-latency N PATH       N stat() calls on a path, each timed; count = N
 *   lock-cycle KIND N FILE    N write lock + unlock pairs on FILE (created if missing), KIND
 *                             posix (F_SETLK), ofd (F_OFD_SETLK) or flock (LOCK_EX|LOCK_NB);
 *                             count = N
 *   lock-waiters N FILE       holds an OFD write lock on FILE (created if missing) while N
 *                             threads, each with its own open file description, wait for one
 *                             in F_OFD_SETLKW; prints "holding N" once every thread has opened
 *                             FILE, releases the lock when a line (or EOF) arrives on stdin,
 *                             and ends once every waiter has been granted the lock and let it
 *                             go; times release to the last one done; count = waiters granted
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what, const char *path) {
  fprintf(stderr, "workload: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static char *alloc_block(size_t size) {
  void *buf;
  if (posix_memalign(&buf, 4096, size) != 0) {
    fprintf(stderr, "workload: out of memory\n");
    exit(1);
  }
  memset(buf, 0x5a, size);
  return buf;
}

static long long read_fd(int fd, char *buf, size_t block, const char *path) {
  long long total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, block);
    if (n < 0) die("read", path);
    if (n == 0) return total;
    total += n;
  }
}

/* Visits every entry below the directory open as `dirfd`: lstat (fstatat, no follow) of each,
 * and with a buffer, reads each regular file. Returns entries seen, adds bytes to *bytes. */
static long long walk(int dirfd, const char *path, char *buf, size_t block, long long *bytes) {
  DIR *dir = fdopendir(dirfd);
  if (!dir) die("fdopendir", path);
  long long entries = 0;
  struct dirent *de;
  while ((errno = 0, de = readdir(dir)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) die("lstat", de->d_name);
    entries++;
    if (S_ISDIR(st.st_mode)) {
      int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY);
      if (sub < 0) die("open", de->d_name);
      entries += walk(sub, de->d_name, buf, block, bytes);
    } else if (buf && S_ISREG(st.st_mode)) {
      int fd = openat(dirfd, de->d_name, O_RDONLY);
      if (fd < 0) die("open", de->d_name);
      *bytes += read_fd(fd, buf, block, de->d_name);
      close(fd);
    }
  }
  if (errno) die("readdir", path);
  closedir(dir);
  return entries;
}

static int open_dir(const char *path) {
  int fd = open(path, O_RDONLY | O_DIRECTORY);
  if (fd < 0) die("open", path);
  return fd;
}

static long long make_empty_files(const char *path, int dirs, int per_dir) {
  int top = open_dir(path);
  char name[32];
  long long files = 0;
  for (int i = 0; i < dirs; i++) {
    snprintf(name, sizeof name, "d%d", i);
    if (mkdirat(top, name, 0755) < 0) die("mkdir", name);
    int dirfd = openat(top, name, O_RDONLY | O_DIRECTORY);
    if (dirfd < 0) die("open", name);
    for (int j = 0; j < per_dir; j++, files++) {
      snprintf(name, sizeof name, "f%d", j);
      int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
      if (fd < 0) die("create", name);
      close(fd);
    }
    close(dirfd);
  }
  close(top);
  return files;
}

static int compare_ns(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return (x > y) - (x < y);
}

/* A whole-file lock request of `type` (F_WRLCK, F_UNLCK) for F_SETLK/F_OFD_SETLK(W); OFD
 * requests must carry l_pid 0. */
static struct flock whole_file(short type) {
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  return fl;
}

static void fcntl_lock(int fd, int cmd, short type, const char *path) {
  struct flock fl = whole_file(type);
  if (fcntl(fd, cmd, &fl) < 0) die(type == F_UNLCK ? "unlock" : "lock", path);
}

static void lock_cycle(const char *kind, long long n, int fd, const char *path) {
  if (strcmp(kind, "posix") == 0 || strcmp(kind, "ofd") == 0) {
    int cmd = kind[0] == 'p' ? F_SETLK : F_OFD_SETLK;
    for (long long i = 0; i < n; i++) {
      fcntl_lock(fd, cmd, F_WRLCK, path);
      fcntl_lock(fd, cmd, F_UNLCK, path);
    }
  } else {
    for (long long i = 0; i < n; i++) {
      if (flock(fd, LOCK_EX | LOCK_NB) < 0) die("flock", path);
      if (flock(fd, LOCK_UN) < 0) die("unflock", path);
    }
  }
}

struct waiters {
  const char *path;
  atomic_int opened;
  atomic_int granted;
};

static void *wait_for_lock(void *arg) {
  struct waiters *w = arg;
  int fd = open(w->path, O_RDWR);
  if (fd < 0) die("open", w->path);
  atomic_fetch_add(&w->opened, 1);
  fcntl_lock(fd, F_OFD_SETLKW, F_WRLCK, w->path);
  atomic_fetch_add(&w->granted, 1);
  fcntl_lock(fd, F_OFD_SETLK, F_UNLCK, w->path);
  close(fd);
  return NULL;
}

/* Each waiter holds a descriptor of its own; the default soft limit of 1024 is too few. */
static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* Returns the ns from releasing the lock to the last waiter letting it go; *granted counts them. */
static long long lock_waiters(int n, const char *path, long long *granted) {
  raise_fd_limit();
  int holder = open(path, O_RDWR | O_CREAT, 0644);
  if (holder < 0) die("create", path);
  fcntl_lock(holder, F_OFD_SETLK, F_WRLCK, path);

  struct waiters w = { .path = path };
  pthread_t *threads = calloc((size_t)n, sizeof *threads);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  for (int i = 0; i < n; i++) {
    errno = pthread_create(&threads[i], &attr, wait_for_lock, &w);
    if (errno) die("pthread_create", path);
  }
  while (atomic_load(&w.opened) < n) usleep(1000);
  printf("holding %d\n", n);
  fflush(stdout);

  char line[64];
  if (!fgets(line, sizeof line, stdin) && ferror(stdin)) die("read", "stdin");
  long long start = now_ns();
  fcntl_lock(holder, F_OFD_SETLK, F_UNLCK, path);
  for (int i = 0; i < n; i++) pthread_join(threads[i], NULL);
  long long end = now_ns();
  close(holder);
  *granted = atomic_load(&w.granted);
  return end - start;
}

static void usage(void) {
  fprintf(stderr, "usage: workload fstat|stat|read|walk|readall|write|create-unlink|append|make-empty-files|"
    "stat-latency|lock-cycle|lock-waiters ARGS…\n");
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 3) usage();
  const char *cmd = argv[1];
  long long count = 0;
  long long start, end;
  char extra[96] = "";

  if (strcmp(cmd, "fstat") == 0 && argc == 4) {
    long long n = atoll(argv[2]);
    int fd = open(argv[3], O_RDONLY);
    if (fd < 0) die("open", argv[3]);
    struct stat st;
    start = now_ns();
    for (count = 0; count < n; count++)
      if (fstat(fd, &st) < 0) die("fstat", argv[3]);
    end = now_ns();
  } else if (strcmp(cmd, "stat") == 0 && argc == 4) {
    long long n = atoll(argv[2]);
    struct stat st;
    start = now_ns();
    for (count = 0; count < n; count++)
      if (stat(argv[3], &st) < 0) die("stat", argv[3]);
    end = now_ns();
  } else if (strcmp(cmd, "read") == 0 && argc == 4) {
    size_t block = (size_t)atoll(argv[3]);
    char *buf = alloc_block(block);
    start = now_ns();
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) die("open", argv[2]);
    count = read_fd(fd, buf, block, argv[2]);
    close(fd);
    end = now_ns();
  } else if (strcmp(cmd, "walk") == 0 && argc == 3) {
    start = now_ns();
    count = walk(open_dir(argv[2]), argv[2], NULL, 0, NULL);
    end = now_ns();
  } else if (strcmp(cmd, "readall") == 0 && argc == 4) {
    size_t block = (size_t)atoll(argv[3]);
    char *buf = alloc_block(block);
    start = now_ns();
    walk(open_dir(argv[2]), argv[2], buf, block, &count);
    end = now_ns();
  } else if (strcmp(cmd, "write") == 0 && argc == 5) {
    long long bytes = atoll(argv[3]);
    size_t block = (size_t)atoll(argv[4]);
    char *buf = alloc_block(block);
    start = now_ns();
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) die("create", argv[2]);
    while (count < bytes) {
      size_t want = bytes - count < (long long)block ? (size_t)(bytes - count) : block;
      ssize_t n = write(fd, buf, want);
      if (n <= 0) die("write", argv[2]);
      count += n;
    }
    if (close(fd) < 0) die("close", argv[2]);
    end = now_ns();
  } else if (strcmp(cmd, "create-unlink") == 0 && argc == 4) {
    long long n = atoll(argv[3]);
    int dirfd = open_dir(argv[2]);
    char name[32];
    start = now_ns();
    for (long long i = 0; i < n; i++) {
      snprintf(name, sizeof name, "f%lld", i);
      int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
      if (fd < 0) die("create", name);
      close(fd);
    }
    for (long long i = 0; i < n; i++) {
      snprintf(name, sizeof name, "f%lld", i);
      if (unlinkat(dirfd, name, 0) < 0) die("unlink", name);
    }
    end = now_ns();
    count = n;
  } else if (strcmp(cmd, "append") == 0 && argc == 3) {
    start = now_ns();
    int fd = open(argv[2], O_WRONLY | O_APPEND);
    if (fd < 0) die("open", argv[2]);
    if (write(fd, "x", 1) != 1) die("write", argv[2]);
    if (close(fd) < 0) die("close", argv[2]);
    end = now_ns();
    count = 1;
  } else if (strcmp(cmd, "make-empty-files") == 0 && argc == 5) {
    start = now_ns();
    count = make_empty_files(argv[2], atoi(argv[3]), atoi(argv[4]));
    end = now_ns();
  } else if (strcmp(cmd, "stat-latency") == 0 && argc == 4) {
    long long n = atoll(argv[2]);
    if (n < 1) usage();
    long long *ns = calloc((size_t)n, sizeof *ns);
    if (!ns) die("calloc", "latencies");
    struct stat st;
    start = now_ns();
    for (count = 0; count < n; count++) {
      long long t = now_ns();
      if (stat(argv[3], &st) < 0) die("stat", argv[3]);
      ns[count] = now_ns() - t;
    }
    end = now_ns();
    qsort(ns, (size_t)n, sizeof *ns, compare_ns);
    snprintf(extra, sizeof extra, ",\"median_ns\":%lld,\"p99_ns\":%lld", ns[n / 2], ns[n * 99 / 100]);
  } else if (strcmp(cmd, "lock-cycle") == 0 && argc == 5 &&
             (strcmp(argv[2], "posix") == 0 || strcmp(argv[2], "ofd") == 0 || strcmp(argv[2], "flock") == 0)) {
    long long n = atoll(argv[3]);
    int fd = open(argv[4], O_RDWR | O_CREAT, 0644);
    if (fd < 0) die("open", argv[4]);
    start = now_ns();
    lock_cycle(argv[2], n, fd, argv[4]);
    end = now_ns();
    close(fd);
    count = n;
  } else if (strcmp(cmd, "lock-waiters") == 0 && argc == 4) {
    int n = atoi(argv[2]);
    if (n < 1) usage();
    start = 0;
    end = lock_waiters(n, argv[3], &count);
  } else {
    usage();
  }
  printf("{\"ns\":%lld,\"count\":%lld%s}\n", end - start, count, extra);
  return 0;
}
