build/san/obj/src/tls/identity.o: src/tls/identity.c src/tls/tls.h \
 src/core/common.h src/core/gen.h src/core/config.h
src/tls/tls.h:
src/core/common.h:
src/core/gen.h:
src/core/config.h:
