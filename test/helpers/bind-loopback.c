/*
 * LD_PRELOAD shim for test servers that can only listen on every address (rpc.statd binds its
 * sockets to the wildcard address and has no option to do otherwise): a bind() to 0.0.0.0 or
 * :: binds 127.0.0.1 or ::1 instead, so nothing such a server opens is reachable from another
 * machine. Built by test/helpers/statd.ts into a temporary directory.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
  static int (*real_bind)(int, const struct sockaddr *, socklen_t);
  if (real_bind == NULL) real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
  if (addr != NULL && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
    struct sockaddr_in in;
    memcpy(&in, addr, sizeof in);
    if (in.sin_addr.s_addr == htonl(INADDR_ANY)) in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return real_bind(fd, (const struct sockaddr *)&in, sizeof in);
  }
  if (addr != NULL && addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
    struct sockaddr_in6 in6;
    memcpy(&in6, addr, sizeof in6);
    if (IN6_IS_ADDR_UNSPECIFIED(&in6.sin6_addr)) in6.sin6_addr = in6addr_loopback;
    return real_bind(fd, (const struct sockaddr *)&in6, sizeof in6);
  }
  return real_bind(fd, addr, len);
}
