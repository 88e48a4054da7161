#include <arpa/inet.h>

#include "core/addr.h"

unsigned moat_addr_format(const struct sockaddr_storage *a, char ip[MOAT_ADDR_IP_LEN])
{
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)a;

		inet_ntop(AF_INET6, &a6->sin6_addr, ip, MOAT_ADDR_IP_LEN);
		return ntohs(a6->sin6_port);
	}
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *a4 = (const struct sockaddr_in *)a;

		inet_ntop(AF_INET, &a4->sin_addr, ip, MOAT_ADDR_IP_LEN);
		return ntohs(a4->sin_port);
	}
	ip[0] = '?';
	ip[1] = '\0';
	return 0;
}
