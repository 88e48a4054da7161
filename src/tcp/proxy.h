/*
 * TCP listeners: (m)TLS terminated or plain TCP, then the byte stream forwarded to the
 * tenant's TCP origin, optionally preceded by a PROXY protocol v2 header.
 */
#ifndef MOAT_TCP_PROXY_H
#define MOAT_TCP_PROXY_H

#include <sys/socket.h>

#include "core/gen.h"
#include "core/worker.h"

/* Hands an accepted socket to the TCP protocol. Takes ownership of fd and of the connection
 * slot taken in the limits. */
void moat_tcp_accept(struct moat_worker *w, struct moat_listener *l, int fd,
                     const struct sockaddr_storage *addr);

#endif
