build/san/obj/src/tls/context.o: src/tls/context.c src/core/log.h \
 src/core/common.h src/core/config.h src/tls/tls.h src/core/gen.h
src/core/log.h:
src/core/common.h:
src/core/config.h:
src/tls/tls.h:
src/core/gen.h:
