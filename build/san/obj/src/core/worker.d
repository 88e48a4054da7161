build/san/obj/src/core/worker.o: src/core/worker.c src/core/alloc.h \
 src/core/limits.h src/core/common.h src/core/log.h src/core/config.h \
 src/core/worker.h src/core/gen.h src/core/list.h src/http/parse.h \
 src/http/proxy.h src/core/buf.h src/core/sock.h src/tls/tls.h
src/core/alloc.h:
src/core/limits.h:
src/core/common.h:
src/core/log.h:
src/core/config.h:
src/core/worker.h:
src/core/gen.h:
src/core/list.h:
src/http/parse.h:
src/http/proxy.h:
src/core/buf.h:
src/core/sock.h:
src/tls/tls.h:
