// supplymon's built-in page: lays out the panels the worker describes at /panels and
// draws each from /panels/<name> (rows only; the SQL stays on the server).
"use strict";

const REFRESH_MS = 15000;
const COLORS = { green: "#16a34a", orange: "#ea580c", red: "#dc2626", yellow: "#ca8a04", blue: "#2563eb" };
const SERIES_COLORS = ["#2563eb", "#16a34a", "#ea580c", "#9333ea", "#0891b2", "#be123c"];
const RANGE_LABELS = { "1d": "近1天 1 day", "7d": "近7天 7 days", "30d": "近30天 30 days", "90d": "近90天 90 days" };
const SHANGHAI = { timeZone: "Asia/Shanghai", hour12: false };
const dateTime = new Intl.DateTimeFormat("zh-CN", { ...SHANGHAI, year: "numeric", month: "2-digit", day: "2-digit",
                                                  hour: "2-digit", minute: "2-digit" });
const dayOnly = new Intl.DateTimeFormat("zh-CN", { ...SHANGHAI, month: "2-digit", day: "2-digit" });

const state = { layout: null, range: null, variables: {}, charts: {}, loaded: 0, failed: 0, latest: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function bilingual(tag, zh, en) {
  return el(tag, {}, zh, el("span", { class: "en" }, en));
}

function label(column) {
  const names = state.layout.columns[column];
  return names ? names : [column, ""];
}

function formatValue(value, unit) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (unit === "percentunit") return (value * 100).toFixed(1) + "%";
  if (unit === "h") return value.toFixed(1) + " 小时";
  if (unit === "s") return value.toFixed(0) + " 秒";
  if (Number.isInteger(value)) return value.toLocaleString("zh-CN");
  return value.toLocaleString("zh-CN", { maximumFractionDigits: 2 });
}

function thresholdColor(panel, value) {
  let color = panel.base_color;
  for (const t of panel.thresholds) if (value !== null && value >= t.value) color = t.color;
  return COLORS[color] || color;
}

function query(params) {
  return Object.entries(params).map(([k, v]) => encodeURIComponent(k) + "=" + encodeURIComponent(v)).join("&");
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// -- drawing ----------------------------------------------------------------------

function drawStat(panel, body, data) {
  const column = data.types.indexOf("number");
  const value = data.rows.length && column >= 0 ? data.rows[0][column] : null;
  const box = el("div", { class: "stat" }, formatValue(value, panel.unit));
  box.style.background = value === null ? "#9ca3af" : thresholdColor(panel, value);
  body.replaceChildren(box);
}

function thresholdLines(panel, axis) {
  if (!panel.thresholds.length) return undefined;
  return {
    silent: true, symbol: "none",
    data: panel.thresholds.map((t) => ({ [axis]: t.value, name: t.label_zh,
      lineStyle: { color: COLORS[t.color] || t.color, type: "dashed" },
      label: { formatter: t.label_zh, color: COLORS[t.color] || t.color, position: "insideEndTop" } })),
  };
}

function chartIn(panel, body) {
  let chart = state.charts[panel.name];
  if (!chart || chart.isDisposed()) {
    const holder = el("div", { class: "chart" });
    body.replaceChildren(holder);
    chart = echarts.init(holder, null, { renderer: "canvas" });
    state.charts[panel.name] = chart;
  }
  return chart;
}

function drawTimeseries(panel, body, data) {
  const series = [];
  data.columns.forEach((column, i) => {
    if (i === 0 || data.types[i] !== "number") return;
    const [zh, en] = label(column);
    series.push({ name: `${zh} ${en}`, type: "line", showSymbol: data.rows.length < 40, connectNulls: false,
                  data: data.rows.map((row) => [row[0], row[i]]) });
  });
  if (series.length) series[0].markLine = thresholdLines(panel, "yAxis");
  const percent = panel.unit === "percentunit";
  chartIn(panel, body).setOption({
    color: SERIES_COLORS, animation: false,
    grid: { left: 56, right: 24, top: 36, bottom: 28 },
    legend: { top: 0, textStyle: { fontSize: 11 } },
    tooltip: { trigger: "axis", valueFormatter: (v) => formatValue(v, panel.unit) },
    xAxis: { type: "time", axisLabel: { formatter: (ms) => dayOnly.format(new Date(ms)) } },
    yAxis: { type: "value", min: percent ? 0 : undefined, max: percent ? 1 : undefined,
             axisLabel: { formatter: (v) => formatValue(v, panel.unit) } },
    series,
  }, true);
}

function drawBar(panel, body, data) {
  const category = data.types.indexOf("text");
  const rows = data.rows.slice().reverse();  // largest on top
  const series = [];
  data.columns.forEach((column, i) => {
    if (data.types[i] !== "number") return;
    const [zh, en] = label(column);
    series.push({ name: `${zh} ${en}`, type: "bar", label: { show: true, position: "right" },
                  data: rows.map((row) => row[i]) });
  });
  if (series.length) series[0].markLine = thresholdLines(panel, "xAxis");
  chartIn(panel, body).setOption({
    color: SERIES_COLORS, animation: false,
    grid: { left: 8, right: 40, top: 28, bottom: 8, containLabel: true },
    legend: { top: 0, textStyle: { fontSize: 11 } },
    tooltip: { trigger: "axis" },
    xAxis: { type: "value" },
    yAxis: { type: "category", data: rows.map((row) => row[category]) },
    series,
  }, true);
}

function drawTable(panel, body, data) {
  if (!data.rows.length) {
    body.replaceChildren(el("div", { class: "empty" }, "暂无数据 no rows"));
    return;
  }
  const head = el("tr", {}, ...data.columns.map((column) => {
    const [zh, en] = label(column);
    return el("th", {}, zh, el("span", { class: "en" }, en));
  }));
  const rows = data.rows.map((row) => el("tr", {}, ...row.map((value, i) => {
    const column = data.columns[i];
    if (data.types[i] === "time") return el("td", {}, value === null ? "—" : dateTime.format(new Date(value)));
    if (data.types[i] === "number") {
      const highlighted = panel.highlighted.includes(column);
      const cell = el("td", { class: "num" }, formatValue(value, highlighted ? panel.unit : "short"));
      if (highlighted && value !== null) cell.style.color = thresholdColor(panel, value);
      return cell;
    }
    return el("td", { class: column === "message" ? "msg" : "" }, value === null ? "—" : value);
  })));
  body.replaceChildren(el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
}

const DRAW = { stat: drawStat, timeseries: drawTimeseries, bar: drawBar, table: drawTable };

// -- loading ------------------------------------------------------------------------

async function loadPanel(dashboard, panel, node) {
  const body = node.querySelector(".body");
  try {
    const data = await getJSON(`/panels/${panel.name}?` + query({ range: state.range, ...state.variables[dashboard.uid] }));
    DRAW[panel.kind](panel, body, data);
    node.classList.remove("error");
    node.dataset.state = "ready";
    node.dataset.rows = String(data.rows.length);
    state.latest = data.to;
    return true;
  } catch (error) {
    node.classList.add("error");
    node.dataset.state = "error";
    body.replaceChildren(el("div", {}, "加载失败 failed: " + error.message));
    return false;
  }
}

async function loadDashboard(dashboard) {
  const nodes = document.querySelectorAll(`section[data-uid="${dashboard.uid}"] .panel`);
  const results = await Promise.all(dashboard.panels.map((panel, i) => loadPanel(dashboard, panel, nodes[i])));
  return results;
}

async function refresh() {
  const results = (await Promise.all(state.layout.dashboards.map(loadDashboard))).flat();
  state.loaded += 1;
  state.failed = results.filter((ok) => !ok).length;
  document.body.dataset.refreshes = String(state.loaded);
  document.body.dataset.failed = String(state.failed);
  const until = state.latest ? dateTime.format(new Date(state.latest)) : "—";
  document.getElementById("status").replaceChildren(
    `数据截至 ${until} · ${state.failed ? state.failed + " 个面板失败" : "已刷新"} `,
    el("span", { class: "en" }, `data up to ${until}; ${state.failed ? state.failed + " panels failed" : "refreshed"} `
      + new Date().toLocaleTimeString("zh-CN", { hour12: false })));
}

async function variableSelect(dashboard, variable) {
  const select = el("select", { "data-variable": variable.name });
  select.append(el("option", { value: "All" }, "全部 All"));
  try {
    const { values } = await getJSON(`/variables/${dashboard.uid}/${variable.name}`);
    for (const value of values) select.append(el("option", { value }, value));
  } catch (error) {
    select.title = error.message;
  }
  select.addEventListener("change", () => {
    state.variables[dashboard.uid][variable.name] = select.value;
    loadDashboard(dashboard);
  });
  return el("label", {}, variable.label_zh, " ", el("span", { class: "en" }, variable.label_en), " ", select);
}

async function layout() {
  state.layout = await getJSON("/panels");
  const asked = new URLSearchParams(window.location.search).get("range");  // e.g. /?range=30d
  state.range = state.layout.ranges.includes(asked) ? asked : state.layout.default_range;
  const rangeSelect = document.getElementById("range");
  for (const name of state.layout.ranges) {
    const option = el("option", { value: name }, RANGE_LABELS[name] || name);
    if (name === state.range) option.selected = true;
    rangeSelect.append(option);
  }
  rangeSelect.addEventListener("change", () => { state.range = rangeSelect.value; refresh(); });
  const nav = document.getElementById("tabs");
  const main = document.getElementById("dashboards");
  for (const dashboard of state.layout.dashboards) {
    state.variables[dashboard.uid] = {};
    const link = el("button", {}, dashboard.title_zh, el("span", { class: "en" }, dashboard.title_en));
    link.addEventListener("click", () => document.getElementById(dashboard.uid).scrollIntoView());
    nav.append(link);
    const variables = el("div", { class: "variables" });
    for (const variable of dashboard.variables) {
      state.variables[dashboard.uid][variable.name] = "All";
      variables.append(await variableSelect(dashboard, variable));
    }
    const grid = el("div", { class: "grid" }, ...dashboard.panels.map((panel) => {
      const node = el("div", { class: "panel", "data-panel": panel.name, "data-kind": panel.kind, "data-state": "loading" },
                      bilingual("h3", panel.title_zh, panel.title_en), el("div", { class: "body" }));
      node.style.gridColumn = `span ${panel.width}`;
      node.style.height = `${panel.height * 36}px`;
      return node;
    }));
    main.append(el("section", { class: "dashboard active", id: dashboard.uid, "data-uid": dashboard.uid },
                   bilingual("h2", dashboard.title_zh, dashboard.title_en), variables, grid));
  }
  window.addEventListener("resize", () => Object.values(state.charts).forEach((chart) => chart.resize()));
}

async function main() {
  try {
    await layout();
  } catch (error) {
    document.getElementById("status").textContent = "无法加载 cannot load: " + error.message;
    return;
  }
  await refresh();
  setInterval(refresh, REFRESH_MS);
}

main();
