/* A stand-in for Windows 10's bcryptprimitives.dll, for Wine 8.0 (Debian 12), which has
 * none: the Go runtime (1.22 and later) loads it at start for ProcessPrng and stops
 * without it. Wine 9 ships its own; Windows always has it. Test use only. */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
	while (len > 0) {
		ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
		if (BCryptGenRandom(NULL, data, n, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
