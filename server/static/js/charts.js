// Charts through the vendored Chart.js (server/static/vendor/chart.js, MIT), loaded on the first
// page that draws one, so the overview's first load doesn't pay for it. Each chart's canvas gets
// data-points (how many points it drew) and an aria-label; charts are destroyed on page change.

let loading = null;
const live = new Set();
export const COLORS = ["#0b5cad", "#c8384b", "#1f7a70", "#a86d00", "#6a4c93", "#5c677d", "#4f7a3a"];

export function loadChartJs() {
  if (window.Chart) return Promise.resolve(window.Chart);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = "/static/vendor/chart.js/chart.umd.min.js";
      s.onload = () => resolve(window.Chart);
      s.onerror = () => { loading = null; reject(new Error("could not load the chart library")); };
      document.head.append(s);
    });
  }
  return loading;
}

export function destroyAll() {
  for (const c of live) c.destroy();
  live.clear();
}

// canvas: an element inside a .chart-box; config: a Chart.js config.
export async function draw(canvas, config, label) {
  const Chart = await loadChartJs();
  if (!canvas || !canvas.isConnected) return null; // the page was left while the library loaded
  const old = Chart.getChart(canvas);
  if (old) { old.destroy(); live.delete(old); }
  const options = config.options || (config.options = {});
  options.responsive = true;
  options.maintainAspectRatio = false;
  options.animation = false;
  const chart = new Chart(canvas, config);
  live.add(chart);
  const points = config.data.datasets.reduce((n, d) => n + (d.data ? d.data.length : 0), 0);
  canvas.dataset.points = String(points);
  canvas.setAttribute("role", "img");
  if (label) canvas.setAttribute("aria-label", label);
  return chart;
}

export function xy(xs, ys) { return xs.map((x, i) => ({ x, y: ys[i] })); }

export function axes(xTitle, yTitle, extra = {}) {
  return {
    x: { type: "linear", title: { display: !!xTitle, text: xTitle }, ...(extra.x || {}) },
    y: { title: { display: !!yTitle, text: yTitle }, ...(extra.y || {}) },
  };
}

// A line or scatter of {x, y} series: [{label, points, color?, dashed?, scatter?}]
export function lines(canvas, series, { x, y, label, xMin, xMax, yMin, yMax } = {}) {
  return draw(canvas, {
    type: "scatter",
    data: {
      datasets: series.map((s, i) => ({
        label: s.label, data: s.points, showLine: !s.scatter, borderColor: s.color || COLORS[i % COLORS.length],
        backgroundColor: s.color || COLORS[i % COLORS.length], pointRadius: s.scatter ? 2 : 0, borderWidth: 2,
        borderDash: s.dashed ? [6, 4] : undefined, tension: 0, pointStyle: s.scatter ? "circle" : "line",
      })),
    },
    options: { scales: axes(x, y, { x: { min: xMin, max: xMax }, y: { min: yMin, max: yMax } }),
      plugins: { legend: { display: series.length > 1, labels: { usePointStyle: true } } } },
  }, label);
}

// Bars: labels and [{label, values, color?}]; horizontal with {horizontal: true}; with
// {overlay: true} the series are drawn over each other, translucent (histograms compared bin by bin).
export function bars(canvas, labels, series, { x, y, label, horizontal, stacked, overlay } = {}) {
  return draw(canvas, {
    type: "bar",
    data: {
      labels,
      datasets: series.map((s, i) => {
        const color = s.color || COLORS[i % COLORS.length];
        return { label: s.label, data: s.values, backgroundColor: overlay ? `${color}80` : color,
          borderColor: color, borderWidth: overlay ? 1.5 : 0, grouped: !overlay, barPercentage: overlay ? 1 : 0.95,
          categoryPercentage: series.length > 1 && !overlay ? 0.9 : 1 };
      }),
    },
    options: {
      indexAxis: horizontal ? "y" : "x",
      scales: { x: { title: { display: !!x, text: x }, stacked }, y: { title: { display: !!y, text: y }, stacked } },
      plugins: { legend: { display: series.length > 1 } },
    },
  }, label);
}
