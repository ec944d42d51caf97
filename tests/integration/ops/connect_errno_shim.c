/*
 * LD_PRELOAD shim for integration.ops.connect: after the first connect(2) to port
 * $ENT_SHIM_PORT, the next successful epoll_ctl(2) leaves errno at ENOENT, as a successful call
 * may. gRPC 1.51 reads connect's errno only after registering the socket with its poller
 * (grpc_tcp_client_create_from_prepared_fd), so it reports that in-progress connect as failed
 * with "No such file or directory": the flake this reproduces on demand (docs/entctl.md).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>

/* Exported despite the project-wide -fvisibility=hidden: interposing is the point. */
static int armed, fired;

__attribute__((visibility("default"))) int connect(int fd, const struct sockaddr *addr,
						   socklen_t len)
{
	static int (*real_connect)(int, const struct sockaddr *, socklen_t);
	if (!real_connect)
		real_connect = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT,
										       "connect");
	int rc = real_connect(fd, addr, len);
	int saved = errno;
	const char *port = getenv("ENT_SHIM_PORT");
	if (!fired && port && addr->sa_family == AF_INET &&
	    ntohs(((const struct sockaddr_in *)addr)->sin_port) == atoi(port)) {
		fired = 1;
		armed = 1;
	}
	errno = saved;
	return rc;
}

__attribute__((visibility("default"))) int epoll_ctl(int epfd, int op, int fd,
						     struct epoll_event *ev)
{
	static int (*real_epoll_ctl)(int, int, int, struct epoll_event *);
	if (!real_epoll_ctl)
		real_epoll_ctl =
			(int (*)(int, int, int, struct epoll_event *))dlsym(RTLD_NEXT, "epoll_ctl");
	int rc = real_epoll_ctl(epfd, op, fd, ev);
	if (armed && rc == 0) {
		armed = 0;
		errno = ENOENT;
	}
	return rc;
}
