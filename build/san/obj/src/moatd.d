build/san/obj/src/moatd.o: src/moatd.c src/core/alloc.h src/core/config.h \
 src/core/common.h src/core/gen.h src/core/config.h src/core/log.h \
 src/core/worker.h src/core/gen.h src/core/list.h src/http/parse.h \
 src/tls/tls.h
src/core/alloc.h:
src/core/config.h:
src/core/common.h:
src/core/gen.h:
src/core/config.h:
src/core/log.h:
src/core/worker.h:
src/core/gen.h:
src/core/list.h:
src/http/parse.h:
src/tls/tls.h:
