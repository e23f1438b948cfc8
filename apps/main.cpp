#include <iostream>

#include "runtime/device.h"

int main() {
  std::cout << "aegis " << AEGIS_VERSION << "\n";
  return 0;
}
