build/san/obj/src/core/gen.o: src/core/gen.c src/core/alloc.h \
 src/core/gen.h src/core/common.h src/core/config.h src/core/log.h \
 src/tls/tls.h
src/core/alloc.h:
src/core/gen.h:
src/core/common.h:
src/core/config.h:
src/core/log.h:
src/tls/tls.h:
