"""The HTML page's own style and script (`report/html.py` renders the page around them), and the
Content-Security-Policy that lets the page load nothing and run only this script.

The script reads the page's data block (`#emogate-data`) and the sample rows' data attributes: it filters the
sample table (gold class, predicted label, right/wrong/invalid, the change against a baseline, a search over
names and answers), unfolds a folded table when a filter leaves few rows, and lists a heatmap cell's samples
(`#cell=GOLD/PREDICTED`, each part URI-encoded). It builds elements with textContent only, never HTML from data.
"""

from __future__ import annotations

import base64
import hashlib

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#111;background:#fff}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ddd;padding:2px 6px;text-align:left;
vertical-align:top}th{background:#f4f4f4}
#verdict{padding:.2em 1em;border-left:8px solid #999}.v-passed{border-color:#2e7d32!important}
.v-failed{border-color:#c62828!important}.v-incomplete{border-color:#ef6c00!important}
.s-failed{color:#c62828;font-weight:bold}.s-passed{color:#2e7d32}.s-not_run{color:#ef6c00}
.heatmap td.hm{padding:0;text-align:center}.heatmap .diag{outline:2px solid #333}
.heatmap a.cell{display:block;color:inherit;text-decoration:none;min-width:3.5em;line-height:2em}
.answer,#samples td:nth-child(5),#samples td:nth-child(7){font-family:ui-monospace,monospace;word-break:break-word}
#samples{table-layout:fixed;width:100%}#samples td{overflow-wrap:anywhere}
.header,.note{color:#555}#filters label{margin-right:1em}
"""

SCRIPT = """
(function(){
"use strict";
var config=JSON.parse(document.getElementById("emogate-data").textContent);
var table=document.getElementById("samples");
var rows=Array.prototype.slice.call(table.tBodies[0].rows);
var hay=null;
var keys=["gold","pred","status"];if(config.baseline){keys.push("change");}
Array.prototype.forEach.call(document.querySelectorAll(".js-only"),function(el){el.hidden=false;});
function text(row){var parts=[row.cells[0].textContent,row.cells[4].textContent];
 if(config.baseline){parts.push(row.cells[6].textContent);}return parts.join("\\n").toLowerCase();}
function apply(){
 if(hay===null){hay=rows.map(text);}
 var want={};keys.forEach(function(k){want[k]=document.getElementById("f-"+k).value;});
 var q=document.getElementById("f-search").value.toLowerCase();var shown=0;
 for(var i=0;i<rows.length;i++){var r=rows[i];var ok=true;
  for(var j=0;j<keys.length&&ok;j++){var k=keys[j];if(want[k]!==""&&r.dataset[k]!==want[k]){ok=false;}}
  if(ok&&q!==""&&hay[i].indexOf(q)<0){ok=false;}
  r.hidden=!ok;if(ok){shown++;}}
 var filtered=q!==""||keys.some(function(k){return want[k]!=="";});
 if(filtered&&shown<=config.open_rows){document.getElementById("samples-box").open=true;}
 document.getElementById("f-count").textContent=shown+" of "+rows.length+" samples shown";
}
keys.forEach(function(k){document.getElementById("f-"+k).addEventListener("change",apply);});
var typing=null;
document.getElementById("f-search").addEventListener("input",function(){
 if(typing!==null){clearTimeout(typing);}typing=setTimeout(apply,150);});
document.getElementById("f-reset").addEventListener("click",function(){
 keys.forEach(function(k){document.getElementById("f-"+k).value="";});
 document.getElementById("f-search").value="";apply();});
function showCell(gold,pred){
 var box=document.getElementById("cell-list");
 while(box.firstChild){box.removeChild(box.firstChild);}
 var found=rows.filter(function(r){return r.dataset.gold===gold&&r.dataset.pred===pred;});
 var h=document.createElement("h3");
 h.textContent="gold "+gold+", predicted "+pred+": "+found.length+" sample"+(found.length===1?"":"s");
 box.appendChild(h);var list=document.createElement("ul");
 found.forEach(function(r){var li=document.createElement("li");
  li.textContent=r.cells[0].textContent+": "+r.cells[4].textContent;list.appendChild(li);});
 box.appendChild(list);
 keys.forEach(function(k){document.getElementById("f-"+k).value="";});
 document.getElementById("f-search").value="";
 document.getElementById("f-gold").value=gold;document.getElementById("f-pred").value=pred;
}
function fromHash(){
 var m=/^#cell=([^/]*)\\/(.*)$/.exec(location.hash);
 if(m){try{showCell(decodeURIComponent(m[1]),decodeURIComponent(m[2]));}catch(e){return;}}
}
Array.prototype.forEach.call(document.querySelectorAll("a.cell"),function(a){
 a.addEventListener("click",function(){setTimeout(function(){fromHash();apply();},0);});});
window.addEventListener("hashchange",function(){fromHash();apply();});
fromHash();
apply();
})();
"""

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    f"script-src 'sha256-{base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()}'"
)
"""Nothing loads from anywhere, and only the page's own script runs (by its hash)."""
