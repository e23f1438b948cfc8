// The grid of a model inversion (privacy/audit_invert.h): one column per inverted class, the
// reconstruction on top and the training data's class mean below, drawn as an RGB image with
// gnuplot (grey images repeat their one channel), each column titled by its class and the Pearson
// correlation of the two.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "core/gnuplot.h"
#include "privacy/audit_invert.h"

namespace aegis::privacy {

void plot_inversion(const InversionReport& r, const std::vector<std::vector<float>>& means, const std::string& path) {
  plot_format(path);
  AEGIS_CHECK(!r.classes.empty(), "no inverted class to plot");
  AEGIS_CHECK(r.input_shape.size() == 3, "the inversion grid needs C x H x W images");
  const std::int64_t channels = r.input_shape[0], height = r.input_shape[1], width = r.input_shape[2];
  const std::int64_t gap = std::max<std::int64_t>(2, width / 8);  // white space between the tiles
  const std::int64_t columns = static_cast<std::int64_t>(r.classes.size());
  const std::int64_t total_w = columns * (width + gap) - gap, total_h = 2 * height + gap;
  draw_with_gnuplot(path, [&](GnuplotCanvas& canvas) {
    const std::string data = canvas.dir + "/grid.dat";
    {
      // Every pixel of the canvas as "x y r g b" (0–255), row y = 0 at the top; the gaps white.
      std::vector<std::array<int, 3>> pixels(static_cast<std::size_t>(total_w * total_h), {255, 255, 255});
      const auto paint = [&](const std::vector<float>& image, std::int64_t x0, std::int64_t y0) {
        for (std::int64_t i = 0; i < height; ++i)
          for (std::int64_t j = 0; j < width; ++j)
            for (std::int64_t c = 0; c < 3; ++c) {
              const std::int64_t from = std::min(c, channels - 1);
              const float v = image[static_cast<std::size_t>((from * height + i) * width + j)];
              pixels[static_cast<std::size_t>((y0 + i) * total_w + x0 + j)][static_cast<std::size_t>(c)] =
                  static_cast<int>(std::lround(255.0f * std::min(1.0f, std::max(0.0f, v))));
            }
      };
      for (std::int64_t k = 0; k < columns; ++k) {
        const InvertedClass& c = r.classes[static_cast<std::size_t>(k)];
        paint(c.image, k * (width + gap), 0);
        paint(means[static_cast<std::size_t>(c.label)], k * (width + gap), height + gap);
      }
      std::ofstream out(data);
      char line[64];
      for (std::int64_t y = 0; y < total_h; ++y)
        for (std::int64_t x = 0; x < total_w; ++x) {
          const auto& px = pixels[static_cast<std::size_t>(y * total_w + x)];
          std::snprintf(line, sizeof line, "%lld %lld %d %d %d\n", static_cast<long long>(x), static_cast<long long>(y),
                        px[0], px[1], px[2]);
          out << line;
        }
      AEGIS_CHECK_AS(IoError, out.good(), data << ": write failed");
    }
    std::ostream& gp = canvas.script;
    gp << "set title " << gnuplot_quote("model inversion (top) and training class means (bottom)") << "\n"
       << "unset border\nunset tics\nunset key\nunset colorbox\nset size ratio -1\n"
       << "set xrange [-0.5:" << total_w - 0.5 << "]\nset yrange [" << total_h - 0.5 << ":-0.5]\n";
    for (std::int64_t k = 0; k < columns; ++k) {
      const InvertedClass& c = r.classes[static_cast<std::size_t>(k)];
      char label[64];
      std::snprintf(label, sizeof label, "%lld: r=%.2f", static_cast<long long>(c.label), c.pearson);
      gp << "set label " << k + 1 << " " << gnuplot_quote(label) << " at "
         << static_cast<double>(k * (width + gap)) + 0.5 * static_cast<double>(width - 1) << ","
         << static_cast<double>(total_h) + 0.04 * static_cast<double>(total_h) << " center font ',10'\n";
    }
    gp << "set bmargin 3\nplot " << gnuplot_quote(data) << " using 1:2:3:4:5 with rgbimage\n";
  });
}

}  // namespace aegis::privacy
