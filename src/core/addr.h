/*
 * Socket address helpers.
 */
#ifndef MOAT_CORE_ADDR_H
#define MOAT_CORE_ADDR_H

#include <netinet/in.h>
#include <sys/socket.h>

#define MOAT_ADDR_IP_LEN INET6_ADDRSTRLEN

/* Writes the address (numeric, no brackets) into ip and returns the port. */
unsigned moat_addr_format(const struct sockaddr_storage *a, char ip[MOAT_ADDR_IP_LEN]);

#endif
