build/san/obj/src/http/upstream.o: src/http/upstream.c src/core/alloc.h \
 src/core/log.h src/core/common.h src/core/config.h src/http/proxy.h \
 src/core/buf.h src/core/gen.h src/core/list.h src/core/sock.h \
 src/core/worker.h src/http/parse.h src/tls/tls.h
src/core/alloc.h:
src/core/log.h:
src/core/common.h:
src/core/config.h:
src/http/proxy.h:
src/core/buf.h:
src/core/gen.h:
src/core/list.h:
src/core/sock.h:
src/core/worker.h:
src/http/parse.h:
src/tls/tls.h:
